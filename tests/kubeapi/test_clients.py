"""Real kopf and real kubectl against the emulated API server."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
import yaml

from imagescan.apiserver.server import ApiServer
from tests.kubeapi.test_server import CRD, GROUP, PLURAL, VERSION, gizmo


def wait_for(condition: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError('The condition was not met in time.')


@pytest.fixture
def operator_calls(kube_api: ApiServer) -> Iterator[list[str]]:
    """A tiny kopf operator, as the project configures it, running in a thread."""
    kube_api.apply(CRD)
    calls: list[str] = []
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id='created')
    def created(name: str, spec: Any, body: kopf.Body, patch: kopf.Patch, **_: Any) -> dict[str, str]:
        calls.append(f'create:{name}')
        kopf.info(body, reason='Created', message='via a core/v1 event with generateName')
        patch.status['phase'] = 'Created'
        return {'color': spec['color']}

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id='deleted')
    def deleted(name: str, **_: Any) -> None:
        calls.append(f'delete:{name}')

    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = 'imagescan.io/finalizer'
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix='imagescan.io')
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix='imagescan.io')
    stop_flag = threading.Event()

    def run() -> None:
        asyncio.run(kopf.operator(registry=registry, settings=settings, standalone=True,
                                  namespaces=['default'], stop_flag=stop_flag))
    thread = threading.Thread(target=run, name='kopf', daemon=True)
    thread.start()
    try:
        yield calls
    finally:
        stop_flag.set()
        thread.join(timeout=15)
        assert not thread.is_alive()


def test_kopf_create_and_delete_flow(kube_api: ApiServer, operator_calls: list[str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    kube_api.apply(gizmo('g1'))

    def handled() -> dict[str, Any] | None:
        obj = kube_api.get(GROUP, VERSION, PLURAL, 'default', 'g1')
        return obj if obj and obj.get('status', {}).get('phase') == 'Created' else None
    obj = wait_for(handled)
    assert obj['status']['created'] == {'color': 'red'}
    assert obj['metadata']['finalizers'] == ['imagescan.io/finalizer']
    wait_for(lambda: any(e['reason'] == 'Created' for e in kube_api.objects('', 'v1', 'events', 'default')))

    kube_api.http('DELETE', f'/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/g1')
    wait_for(lambda: kube_api.get(GROUP, VERSION, PLURAL, 'default', 'g1') is None)
    assert operator_calls == ['create:g1', 'delete:g1']

    # No hot loop: an idle operator makes (almost) no requests.
    before = kube_api.request_count
    time.sleep(1)
    assert kube_api.request_count - before < 5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def kubectl(kubeconfig: pathlib.Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(['kubectl', '--kubeconfig', str(kubeconfig), *args], input=stdin,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_apply_get_delete(kube_api: ApiServer, tmp_path: pathlib.Path) -> None:
    kubeconfig = kube_api.write_kubeconfig(tmp_path / 'kubectl-config')
    crd_file = tmp_path / 'crd.yaml'
    crd_file.write_text(yaml.safe_dump(CRD))
    kubectl(kubeconfig, 'apply', '--validate=false', '-f', str(crd_file))
    manifest = yaml.safe_dump(gizmo('g1', size=2))
    kubectl(kubeconfig, 'apply', '--validate=false', '-f', '-', stdin=manifest)
    kubectl(kubeconfig, 'apply', '--validate=false', '-f', '-', stdin=yaml.safe_dump(gizmo('g1', size=4)))
    listed = json.loads(kubectl(kubeconfig, 'get', PLURAL, '-o', 'json'))
    assert [(item['metadata']['name'], item['spec']['size']) for item in listed['items']] == [('g1', 4)]
    assert json.loads(kubectl(kubeconfig, 'get', 'gz', 'g1', '-o', 'json'))['spec']['color'] == 'red'
    kubectl(kubeconfig, 'delete', f'{PLURAL}.{GROUP}', 'g1')
    assert kube_api.objects(GROUP, VERSION, PLURAL) == []
