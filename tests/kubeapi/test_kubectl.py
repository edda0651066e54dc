"""What a kubectl user sees of the emulated API server: ``get`` (server-side Tables), ``explain``, ``apply``."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from imagescan.apiserver.server import ApiServer, HttpError
from tests.conftest import ROOT

CRD_FILE = ROOT / 'crds' / 'imagepipelines.imagescan.io.yaml'
GROUP, VERSION, PLURAL = 'imagescan.io', 'v1alpha1', 'imagepipelines'
OBJECTS = f'/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}'
TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,' \
        'application/json'
STATUS: dict[str, Any] = {
    'scanning': {'enabled': True},
    'findings': {'latestImage': {'arn': 'arn:aws:imagebuilder:eu-west-1:123456789012:image/demo/1.0.0/3',
                                 'version': '1.0.0/3',
                                 'severityCounts': {'critical': 2, 'high': 5, 'medium': 7, 'low': 11, 'total': 25}}},
    'conditions': [{'type': 'Reconciling', 'status': 'False', 'reason': 'Idle',
                    'lastTransitionTime': '2024-01-01T00:00:00Z'},
                   {'type': 'Ready', 'status': 'True', 'reason': 'Scanned',
                    'lastTransitionTime': '2024-01-01T00:00:00Z'}],
}


def pipeline(name: str, **spec: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'ImagePipeline', 'metadata': {'name': name},
            'spec': {'pipelineName': name, **spec}}


@pytest.fixture(scope='module')
def api() -> Iterator[ApiServer]:
    """One server for the module (kubectl is slow to start): the CRD, p1 with a status, p2 without."""
    with ApiServer() as server:
        server.apply_yaml(CRD_FILE)
        server.apply(pipeline('p1'))
        server.apply(pipeline('p2'))
        server.http('PATCH', f'{OBJECTS}/p1/status', {'status': STATUS},
                    content_type='application/merge-patch+json')
        yield server


@pytest.fixture(scope='module')
def kubeconfig(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return api.write_kubeconfig(tmp_path_factory.mktemp('kubectl') / 'kubeconfig')


def run_kubectl(kubeconfig: pathlib.Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cache = kubeconfig.parent / 'cache'
    return subprocess.run(['kubectl', '--kubeconfig', str(kubeconfig), '--cache-dir', str(cache), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)


def kubectl(kubeconfig: pathlib.Path, *args: str, stdin: str | None = None) -> str:
    result = run_kubectl(kubeconfig, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(output: str) -> list[list[str]]:
    """kubectl's table output as cells; blank cells (missing values) become ''."""
    lines = output.rstrip('\n').split('\n')
    starts = [match.start() for match in re.finditer(r'\S+(?: \S+)*', lines[0])]  # 'CREATED AT'
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[start:end].strip() for start, end in bounds] for line in lines]


def http_get(api: ApiServer, path: str, accept: str = TABLE) -> Any:
    request = urllib.request.Request(api.url + path, headers={'Accept': accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- kubectl get ----------------------------------------------------------------------------------------


def test_get_prints_the_crd_printer_columns(kubeconfig: pathlib.Path) -> None:
    header, p1, p2 = rows(kubectl(kubeconfig, 'get', 'imagepipelines'))
    assert header == ['NAME', 'SCANNING', 'CRITICAL', 'HIGH', 'TOTAL', 'READY', 'AGE']
    assert p1[:6] == ['p1', 'true', '2', '5', '25', 'True']
    assert re.fullmatch(r'\d+s', p1[6])  # the server turns creationTimestamp into an age
    assert p2[0] == 'p2' and p2[1:6] == [''] * 5  # no status yet: empty cells, as the real server


def test_get_wide_adds_priority_columns(kubeconfig: pathlib.Path) -> None:
    header, p1, _ = rows(kubectl(kubeconfig, 'get', 'ibp', '-o', 'wide'))
    assert header == ['NAME', 'SCANNING', 'CRITICAL', 'HIGH', 'TOTAL', 'READY', 'AGE',
                      'MEDIUM', 'LOW', 'LATEST-IMAGE', 'REASON']
    assert p1[7:] == ['7', '11', '1.0.0/3', 'Scanned']


def test_get_one_object_and_all_namespaces(kubeconfig: pathlib.Path) -> None:
    header, p1 = rows(kubectl(kubeconfig, 'get', 'ibp', 'p1'))
    assert header[:3] == ['NAME', 'SCANNING', 'CRITICAL'] and p1[:3] == ['p1', 'true', '2']
    header, p1, _ = rows(kubectl(kubeconfig, 'get', 'ibp', '-A'))
    assert header[:2] == ['NAMESPACE', 'NAME'] and p1[:3] == ['default', 'p1', 'true']


def test_get_builtin_kinds_prints_name_and_created_at(kubeconfig: pathlib.Path) -> None:
    header, *namespaces = rows(kubectl(kubeconfig, 'get', 'namespaces'))
    assert header == ['NAME', 'CREATED AT']
    assert [ns[0] for ns in namespaces] == ['default', 'kube-public', 'kube-system']
    assert all(re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', ns[1]) for ns in namespaces)


def test_table_over_http(api: ApiServer) -> None:
    listing = http_get(api, OBJECTS)
    assert listing['kind'] == 'Table' and listing['apiVersion'] == 'meta.k8s.io/v1'
    assert listing['metadata']['resourceVersion'].isdigit()
    columns = {column['name']: column for column in listing['columnDefinitions']}
    assert list(columns)[:2] == ['Name', 'Scanning'] and columns['Name']['format'] == 'name'
    assert columns['Critical'] == {'name': 'Critical', 'type': 'integer', 'format': '',
                                   'description': 'Critical findings, latest image', 'priority': 0}
    assert columns['Medium']['priority'] == 1
    p1 = listing['rows'][0]
    assert p1['cells'][:6] == ['p1', True, 2, 5, 25, 'True']
    assert p1['object']['kind'] == 'PartialObjectMetadata' and p1['object']['metadata']['name'] == 'p1'
    assert 'spec' not in p1['object']
    full = http_get(api, f'{OBJECTS}?includeObject=Object')['rows'][0]['object']
    assert full['kind'] == 'ImagePipeline' and full['status'] == STATUS
    assert 'object' not in http_get(api, f'{OBJECTS}/p1?includeObject=None')['rows'][0]
    assert http_get(api, OBJECTS, accept='application/json')['kind'] == 'ImagePipelineList'
    beta = http_get(api, '/api/v1/namespaces', accept='application/json;as=Table;v=v1beta1;g=meta.k8s.io')
    assert beta['apiVersion'] == 'meta.k8s.io/v1beta1'
    assert [column['name'] for column in beta['columnDefinitions']] == ['Name', 'Created At']


def test_crd_with_a_bad_printer_column_is_invalid(api: ApiServer) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    crd['metadata']['name'] = 'badpipelines.imagescan.io'
    crd['spec']['names'] = {'plural': 'badpipelines', 'kind': 'BadPipeline'}
    crd['spec']['versions'][0]['additionalPrinterColumns'][0]['jsonPath'] = 'status..enabled'
    with pytest.raises(HttpError) as invalid:
        api.http('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)
    assert invalid.value.code == 422
    assert 'spec.versions[0].additionalPrinterColumns[0].jsonPath' in invalid.value.status['message']


def test_watch_as_table(api: ApiServer) -> None:
    events = urllib.request.urlopen(urllib.request.Request(
        f'{api.url}{OBJECTS}?watch=true&timeoutSeconds=0.2', headers={'Accept': TABLE}), timeout=10).read()
    tables = [json.loads(line)['object'] for line in events.splitlines()]
    assert [table['kind'] for table in tables] == ['Table', 'Table']
    assert [table['rows'][0]['cells'][0] for table in tables] == ['p1', 'p2']


# --- kubectl explain ------------------------------------------------------------------------------------


def test_explain_shows_crd_descriptions(kubeconfig: pathlib.Path) -> None:
    spec = kubectl(kubeconfig, 'explain', 'imagepipeline.spec')
    assert 'KIND:       ImagePipeline' in spec and 'VERSION:    v1alpha1' in spec
    assert 'pipelineArn\t<string>' in spec
    assert 'ARN of the Image Builder pipeline' in spec
    top = kubectl(kubeconfig, 'explain', 'imagepipeline.status.findings.top')
    assert 'FIELD: top <[]Object>' in top
    assert 'vulnerabilityId\t<string> -required-' in top
    metadata = kubectl(kubeconfig, 'explain', 'ibp.metadata.labels')
    assert 'FIELD: labels <map[string]string>' in metadata


def test_openapi_documents(api: ApiServer) -> None:
    index = http_get(api, '/openapi/v3', accept='application/json')['paths']
    assert {'api/v1', f'apis/{GROUP}/{VERSION}'} <= set(index)
    url = index[f'apis/{GROUP}/{VERSION}']['serverRelativeURL']
    assert url.startswith(f'/openapi/v3/apis/{GROUP}/{VERSION}?hash=')
    document = http_get(api, url, accept='application/json')
    schema = document['components']['schemas']['io.imagescan.v1alpha1.ImagePipeline']
    assert schema['x-kubernetes-group-version-kind'] == [{'group': GROUP, 'version': VERSION,
                                                          'kind': 'ImagePipeline'}]
    assert schema['properties']['metadata']['allOf'] == [
        {'$ref': '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta'}]
    assert 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta' in document['components']['schemas']
    patch = document['paths'][f'{OBJECTS.replace("/default/", "/{namespace}/")}/{{name}}']['patch']
    assert 'fieldValidation' in [parameter['name'] for parameter in patch['parameters']]


# --- kubectl apply --------------------------------------------------------------------------------------


def test_apply_validates_on_the_server(kubeconfig: pathlib.Path, api: ApiServer) -> None:
    crd = kubectl(kubeconfig, 'apply', '-f', str(CRD_FILE))  # no --validate=false needed
    assert 'customresourcedefinition.apiextensions.k8s.io/imagepipelines.imagescan.io' in crd
    assert 'created' in kubectl(kubeconfig, 'apply', '-f', '-', stdin=yaml.safe_dump(pipeline('p3')))
    updated = yaml.safe_dump(pipeline('p3', resyncInterval='5m'))
    assert 'configured' in kubectl(kubeconfig, 'apply', '-f', '-', stdin=updated)
    assert 'unchanged' in kubectl(kubeconfig, 'apply', '-f', '-', stdin=updated)
    bogus = yaml.safe_dump(pipeline('p4', bogus=1))
    refused = run_kubectl(kubeconfig, 'apply', '-f', '-', stdin=bogus)
    assert refused.returncode != 0 and 'strict decoding error: unknown field "spec.bogus"' in refused.stderr
    kubectl(kubeconfig, 'apply', '--validate=false', '-f', '-', stdin=bogus)  # pruned instead
    assert api.get(GROUP, VERSION, PLURAL, 'default', 'p4')['spec'] == {'pipelineName': 'p4'}  # type: ignore[index]
    kubectl(kubeconfig, 'delete', 'ibp', 'p3', 'p4')
    assert [obj['metadata']['name'] for obj in api.objects(GROUP, VERSION, PLURAL)] == ['p1', 'p2']
