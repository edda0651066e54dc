"""`imagescan findings` against an emulated cluster holding several ImagePipelines in two namespaces."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from imagescan import cli, views
from imagescan.apiserver import ApiServer
from imagescan.models import imagepipeline as m
from tests.conftest import ROOT
from tests.support import controlplane
from tests.support.fixtures import own_control_plane

GROUP, VERSION, PLURAL = "imagescan.io", "v1alpha1", "imagepipelines"
ACCOUNT = "123456789012"


def finding(cve: str, severity: str, score: float | None, package: str, fixed: str | None = None,
            nvd: bool = True) -> m.Finding:
    return m.Finding(
        vulnerability_id=cve, severity=severity, inspector_score=score,
        cvss=m.CvssScore(base_score=score, source="NVD", version="3.1") if score is not None else None,
        package=m.PackageRef(name=package, installed_version="1.0.0-1", fixed_in_version=fixed),
        fix_available="YES" if fixed else "NO", vendor_published_at="2024-03-01T10:00:00Z",
        nvd_url=f"https://nvd.nist.gov/vuln/detail/{cve}" if nvd and cve.startswith("CVE-") else None,
    )


def status(name: str, kind: str, version: str, counts: dict[str, int], top: list[m.Finding],
           ready: str = "True", outputs: dict[str, list[str]] | None = None) -> dict[str, Any]:
    arn = f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image-pipeline/{name}"
    return m.ImagePipelineStatus(
        observed_generation=1,
        conditions=[{"type": "Ready", "status": ready, "reason": "Reconciled", "message": "ok",
                     "lastTransitionTime": "2024-05-01T00:00:00Z"}],
        pipeline=m.PipelineStatus(arn=arn, name=name, account_id=ACCOUNT, region="us-east-1", kind=kind),
        scanning=m.ScanningStatus(enabled=True),
        findings=m.FindingsStatus(
            severity_counts=m.SeverityCounts(**{k: v * 2 for k, v in counts.items()}),
            latest_image=m.LatestImage(
                arn=f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image/{name}-recipe/{version}", version=version,
                state="AVAILABLE", scan_state="COMPLETED", severity_counts=m.SeverityCounts(**counts),
                **(outputs or {}),
            ),
            top=top,
        ),
    ).to_k8s()


def detailed(base: m.Finding) -> m.Finding:
    """``base`` with what the console's finding panel shows, as the operator keeps it in status."""
    return base.model_copy(update={
        "title": f"{base.vulnerability_id} - openssl, openssl-libs",
        "description": "A buffer overread in X.509 name checking lets a remote attacker read memory. " * 3,
        "adjusted_cvss": m.AdjustedCvss(
            score=base.inspector_score, vector="CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", version="3.1",
            score_source="NVD", cvss_source="NVD",
            adjustments=[m.CvssAdjustment(metric="Attack Complexity", reason="no exploit known in this environment")]),
        "packages": [
            m.PackageRef(name="openssl", installed_version="1.0.0-1", fixed_in_version="3.0.9", package_manager="OS"),
            m.PackageRef(name="cryptography", installed_version="41.0.1", fixed_in_version="41.0.3",
                         package_manager="PIP", file_path="/usr/lib/python3/site-packages/cryptography/METADATA"),
        ],
        "related_vulnerabilities": ["ALAS2023-2024-101", "ALAS2-2024-2002"],
        "omitted": m.Omitted(related_vulnerabilities=4),
        "remediation": m.Remediation(text="Upgrade openssl to 3.0.9 or later.", url="https://alas.aws.amazon.com/x"),
        "vendor_updated_at": "2024-03-05T08:00:00Z", "vendor_severity": "Important", "source": "NVD",
        "first_observed_at": "2024-04-01T00:00:00Z",
        "reference_urls": ["https://www.openssl.org/news/secadv/20240301.txt"],
    })


SHARED = "CVE-2023-1111"
STATUSES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("default", "web-ami"): status(
        "web-ami-aws", "AMI", "1.0.0/3",
        {"critical": 2, "high": 3, "medium": 5, "low": 7, "informational": 1, "untriaged": 0, "total": 18},
        [detailed(finding("CVE-2024-0001", "CRITICAL", 9.8, "openssl", "3.0.9")),
         finding("CVE-2024-0002", "CRITICAL", 9.1, "glibc"),
         finding(SHARED, "HIGH", 7.5, "curl", "8.5.0"),
         finding("CVE-2022-2222", "MEDIUM", 5.0, "expat", "2.6.0")],
        outputs={"amis": ["ami-0123456789abcdef0"]},
    ),
    ("default", "legacy"): None,
    ("team-b", "api"): status(
        "api-container", "Container", "2.1.0/7",
        {"critical": 0, "high": 1, "medium": 1, "low": 1, "informational": 0, "untriaged": 0, "total": 3},
        [finding(SHARED, "HIGH", 8.1, "curl", "8.4.0"),
         finding("GHSA-abcd-1234-wxyz", "MEDIUM", 5.5, "requests", "2.32.0"),
         finding("CVE-2021-3333", "LOW", 3.1, "zlib")],
        outputs={"container_images": [f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/api:2.1.0-7"]},
    ),
    ("team-b", "batch"): status(
        "batch-aws", "AMI", "0.9.0/1",
        {"critical": 0, "high": 0, "medium": 0, "low": 0, "informational": 1, "untriaged": 1, "total": 2},
        [finding("CVE-2020-5555", "INFORMATIONAL", 0.0, "bash"),
         finding("CVE-2020-4444", "UNTRIAGED", None, "tar", nvd=False)],
        ready="False",
    ),
}
ALL_ORDER = ["CVE-2024-0001", "CVE-2024-0002", SHARED, SHARED, "GHSA-abcd-1234-wxyz", "CVE-2022-2222",
             "CVE-2021-3333", "CVE-2020-5555", "CVE-2020-4444"]


@pytest.fixture(scope="module")
def api() -> Iterator[controlplane.ControlPlane]:
    """A control plane of the module's own (``-A`` must see only these): the CRD, namespace team-b, four
    ImagePipelines (one without status), status written through the status subresource as the operator does."""
    plane = own_control_plane()
    with plane:
        plane.apply_yaml(ROOT / "crds" / "imagepipelines.imagescan.io.yaml")
        plane.create_namespace("team-b")
        for (namespace, name), body in STATUSES.items():
            plane.apply({
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "ImagePipeline",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"pipelineArn": f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image-pipeline/{name}"},
            }, namespace=namespace)
            if body is not None:
                code, answer = plane.http(
                    "PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
                    {"status": body}, content_type="application/merge-patch+json")
                assert code == 200, answer
        yield plane


@pytest.fixture(scope="module")
def kubeconfig(api: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return api.write_kubeconfig(tmp_path_factory.mktemp("views") / "kubeconfig")


def run(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path, *args: str) -> str:
    assert cli.main(["findings", "--kubeconfig", str(kubeconfig), *args]) == 0
    out = capsys.readouterr().out
    return out


def as_json(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(run(capsys, kubeconfig, *args, "-o", "json"))
    return rows


def table_rows(text: str) -> list[list[str]]:
    """Cells of the table part of the output (up to the blank line before the footer)."""
    lines = text.split("\n\n")[0].strip("\n").split("\n")
    return [line.split() for line in lines]


def test_all_findings_across_namespaces(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    out = run(capsys, kubeconfig, "-A")
    rows = table_rows(out)
    assert rows[0] == ["NAMESPACE", "PIPELINE", "VULNERABILITY", "SEVERITY", "INSPECTOR", "CVSS", "PACKAGE",
                       "INSTALLED", "FIXED-IN", "FIX", "PUBLISHED", "NVD"]
    assert [r[2] for r in rows[1:]] == ALL_ORDER
    assert rows[1] == ["default", "web-ami", "CVE-2024-0001", "CRITICAL", "9.8", "9.8", "openssl", "1.0.0-1",
                       "3.0.9", "YES", "2024-03-01", "https://nvd.nist.gov/vuln/detail/CVE-2024-0001"]
    assert [r[0:2] for r in rows[3:5]] == [["team-b", "api"], ["default", "web-ami"]]  # 8.1 before 7.5
    # every CVE has its NVD link, also when status did not keep one
    assert rows[-1][2] == "CVE-2020-4444" and rows[-1][-1] == "https://nvd.nist.gov/vuln/detail/CVE-2020-4444"
    assert "status.findings.top" in out and "worst N" in out
    assert "\x1b[" not in out


def test_namespace_flag_and_context_default(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path,
                                            api: ApiServer, tmp_path: pathlib.Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rows = table_rows(run(capsys, kubeconfig, "-n", "team-b"))
    assert rows[0][0] == "PIPELINE"  # like kubectl: no NAMESPACE column for one namespace
    assert {r[0] for r in rows[1:]} == {"api", "batch"}
    # no -n: the context's namespace (default here)
    assert {r["pipeline"] for r in as_json(capsys, kubeconfig)} == {"web-ami"}
    # a context whose namespace is team-b, found through $KUBECONFIG
    other = api.write_kubeconfig(tmp_path / "team-b.kubeconfig", namespace="team-b")
    monkeypatch.setenv("KUBECONFIG", str(other))
    assert cli.main(["findings", "-o", "json"]) == 0
    assert {r["namespace"] for r in json.loads(capsys.readouterr().out)} == {"team-b"}


def test_by_pipeline(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    out = run(capsys, kubeconfig, "--by", "pipeline", "-A")
    rows = table_rows(out)
    assert rows[0] == ["NAMESPACE", "NAME", "AWS", "PIPELINE", "ACCOUNT", "REGION", "SCANNING", "CRITICAL", "HIGH",
                       "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED", "TOTAL", "LATEST-IMAGE", "READY"]
    where = [ACCOUNT, "us-east-1"]
    assert rows[1:] == [
        ["default", "legacy", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"],
        ["default", "web-ami", "web-ami-aws", *where, "true", "2", "3", "5", "7", "1", "0", "18", "1.0.0/3", "True"],
        ["team-b", "api", "api-container", *where, "true", "0", "1", "1", "1", "0", "0", "3", "2.1.0/7", "True"],
        ["team-b", "batch", "batch-aws", *where, "true", "0", "0", "0", "0", "1", "1", "2", "0.9.0/1", "False"],
    ]
    assert "Counts are complete" in out


def test_by_image(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    rows = table_rows(run(capsys, kubeconfig, "--by", "image", "-A"))
    assert rows[0][:7] == ["IMAGE", "ARN", "NAMESPACE", "PIPELINE", "AMIS", "/", "CONTAINER"]
    assert [r[:5] for r in rows[1:]] == [
        ["1.0.0/3", f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image/web-ami-aws-recipe/1.0.0/3", "default",
         "web-ami", "ami-0123456789abcdef0"],
        ["2.1.0/7", f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image/api-container-recipe/2.1.0/7", "team-b",
         "api", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/api:2.1.0-7"],
        ["0.9.0/1", f"arn:aws:imagebuilder:us-east-1:{ACCOUNT}:image/batch-aws-recipe/0.9.0/1", "team-b",
         "batch", "-"],
    ]
    assert rows[1][5:] == ["2", "3", "5", "7", "1", "0", "18"]


def test_by_vulnerability_counts_pipelines(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    rows = as_json(capsys, kubeconfig, "--by", "vulnerability", "-A")
    assert rows[0] == {
        "vulnerabilityId": SHARED, "severity": "HIGH", "inspectorScore": 8.1, "cvss": 8.1, "pipelines": 2,
        "pipelineNames": ["default/web-ami", "team-b/api"], "packages": ["curl"],
        "fixedInVersions": ["8.4.0", "8.5.0"], "nvdUrl": f"https://nvd.nist.gov/vuln/detail/{SHARED}",
    }
    assert [r["vulnerabilityId"] for r in rows[1:4]] == ["CVE-2024-0001", "CVE-2024-0002", "GHSA-abcd-1234-wxyz"]
    assert all(r["pipelines"] == 1 for r in rows[1:])
    ghsa = next(r for r in rows if r["vulnerabilityId"].startswith("GHSA"))
    assert ghsa["nvdUrl"] is None  # only CVEs have an NVD page
    table = table_rows(run(capsys, kubeconfig, "--by", "vulnerability", "-A"))
    assert table[0] == ["VULNERABILITY", "SEVERITY", "INSPECTOR", "CVSS", "PIPELINES", "FIXED-IN", "NVD"]
    assert table[1] == [SHARED, "HIGH", "8.1", "8.1", "2", "8.4.0,8.5.0", f"https://nvd.nist.gov/vuln/detail/{SHARED}"]


def test_severity_filter_is_case_insensitive(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    rows = as_json(capsys, kubeconfig, "-A", "--severity", "critical", "--severity", "High")
    assert [r["vulnerabilityId"] for r in rows] == ["CVE-2024-0001", "CVE-2024-0002", SHARED, SHARED]
    by_pipeline = as_json(capsys, kubeconfig, "-A", "--by", "pipeline", "--severity", "untriaged")
    assert [r["name"] for r in by_pipeline] == ["batch"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["findings", "--kubeconfig", str(kubeconfig), "--severity", "urgent"])
    assert exc.value.code == 2


def test_pipeline_filter(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    rows = as_json(capsys, kubeconfig, "-A", "--pipeline", "api")
    assert {(r["namespace"], r["pipeline"]) for r in rows} == {("team-b", "api")}
    assert len(rows) == 3
    both = as_json(capsys, kubeconfig, "-A", "--by", "pipeline", "--pipeline", "api", "--pipeline", "legacy")
    assert [r["name"] for r in both] == ["legacy", "api"]


def test_json_and_yaml_give_the_same_rows(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    for by in ([], ["--by", "vulnerability"], ["--by", "pipeline"], ["--by", "image"]):
        from_json = as_json(capsys, kubeconfig, "-A", *by)
        from_yaml = yaml.safe_load(run(capsys, kubeconfig, "-A", *by, "-o", "yaml"))
        assert from_yaml == from_json and from_json
    first = as_json(capsys, kubeconfig, "-A")[0]
    assert list(first) == ["namespace", "pipeline", "account", "image", "vulnerabilityId", "severity",
                           "inspectorScore", "cvss", "cvssSource", "package", "installedVersion", "fixedInVersion",
                           "fixAvailable", "vendorPublishedAt", "nvdUrl"]
    assert first["image"] == "1.0.0/3" and first["vendorPublishedAt"] == "2024-03-01T10:00:00Z"
    legacy = as_json(capsys, kubeconfig, "--by", "pipeline", "--pipeline", "legacy")[0]
    assert legacy["critical"] is None and legacy["ready"] is None


def test_empty_result(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    assert run(capsys, kubeconfig, "-n", "default", "--severity", "low") == "No findings.\n"
    assert run(capsys, kubeconfig, "-n", "nowhere", "--by", "pipeline") == "No findings.\n"
    assert json.loads(run(capsys, kubeconfig, "--pipeline", "nope", "-o", "json")) == []
    assert yaml.safe_load(run(capsys, kubeconfig, "--pipeline", "nope", "-o", "yaml")) == []


def test_unreachable_cluster_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    with ApiServer() as server:
        config = server.write_kubeconfig(tmp_path / "kubeconfig")
    assert cli.main(["findings", "--kubeconfig", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert cli.main(["findings", "--kubeconfig", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot load kubeconfig")


def test_pure_views_tolerate_missing_status() -> None:
    entries = views.parse_entries([{"metadata": {"namespace": "a", "name": "x"}},
                                   {"metadata": {"namespace": "a", "name": "y"}, "status": {"findings": "bad"}}])
    assert [e.status for e in entries] == [m.ImagePipelineStatus(), m.ImagePipelineStatus()]
    view = views.build("findings", entries=entries, severities=frozenset(), namespaced=False)
    assert view.rows == [] and views.render(view, "table") == "No findings.\n"


def test_kubectl_plugin(kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> None:
    script = pathlib.Path(sys.executable).parent / "kubectl-imagescan"
    found = shutil.which("kubectl-imagescan") or (str(script) if script.exists() else None)
    assert found, "kubectl-imagescan is not installed: pip install -e ."
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "PATH": f"{pathlib.Path(found).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "KUBECONFIG": str(tmp_path / "absent"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [kubectl, "imagescan", "findings", "--by", "pipeline", "-A", "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows[0][:2] == ["NAMESPACE", "NAME"]
    assert [r[1] for r in rows[1:]] == ["legacy", "web-ami", "api", "batch"]
    listed = subprocess.run([kubectl, "plugin", "list"], capture_output=True, text=True, timeout=60, env=env,
                            check=False)
    assert "kubectl-imagescan" in listed.stdout


def test_detail_panel_shows_the_console_finding_detail(capsys: pytest.CaptureFixture[str],
                                                      kubeconfig: pathlib.Path) -> None:
    out = run(capsys, kubeconfig, "-A", "--detail", "--severity", "critical")
    panels = out.split("\n\n")
    assert len(panels) == 3  # two findings, then the footer
    first = panels[0].splitlines()
    assert first[:2] == ["CVE-2024-0001 - openssl, openssl-libs", "=" * len("CVE-2024-0001 - openssl, openssl-libs")]
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in first if not line.startswith(" ")
              and ":" in line and not line.endswith(":")}
    assert fields["Severity"] == "CRITICAL (vendor Important)"
    assert fields["Pipeline"] == "default/web-ami (image 1.0.0/3)"
    assert fields["Inspector score"] == "9.8" and fields["CVSS base score"] == "9.8 (NVD, CVSS 3.1)"
    assert fields["Adjusted vector"] == "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert "  - Attack Complexity: no exploit known in this environment" in first
    at = first.index("Packages:")
    assert first[at + 1].split() == ["PACKAGE", "INSTALLED", "FIXED-IN", "MANAGER", "PATH"]
    assert first[at + 2].split() == ["openssl", "1.0.0-1", "3.0.9", "OS", "-"]
    assert first[at + 3].split() == ["cryptography", "41.0.1", "41.0.3", "PIP",
                                     "/usr/lib/python3/site-packages/cryptography/METADATA"]
    assert fields["Related"] == "ALAS2023-2024-101, ALAS2-2024-2002 (+4 more)"
    assert fields["Remediation"] == "Upgrade openssl to 3.0.9 or later."
    assert (fields["Published"], fields["Vendor updated"], fields["First observed"]) == (
        "2024-03-01", "2024-03-05", "2024-04-01")
    assert fields["NVD"] == "https://nvd.nist.gov/vuln/detail/CVE-2024-0001"
    assert fields["References"] == "https://www.openssl.org/news/secadv/20240301.txt"
    assert first[first.index("Description:") + 1].startswith("  A buffer overread in X.509")
    # a finding with only what status had before shows what it has, nothing invented
    second = panels[1].splitlines()
    assert second[0] == "CVE-2024-0002" and not any(line.startswith(("Adjust", "Related", "Desc")) for line in second)
    assert "status.findings.top" in panels[2]


def test_detail_as_yaml_is_the_status_structure(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    rows = yaml.safe_load(run(capsys, kubeconfig, "-A", "--detail", "-o", "yaml"))
    assert [r["vulnerabilityId"] for r in rows] == ALL_ORDER
    first = rows[0]
    assert {k: first[k] for k in ("namespace", "pipeline", "image")} == {
        "namespace": "default", "pipeline": "web-ami", "image": "1.0.0/3"}
    stored = STATUSES[("default", "web-ami")]
    assert stored is not None
    assert {k: v for k, v in first.items() if k not in ("namespace", "pipeline", "account", "image")} == \
        stored["findings"]["top"][0]
    assert first["adjustedCvss"]["adjustments"] == [
        {"metric": "Attack Complexity", "reason": "no exploit known in this environment"}]
    assert rows == as_json(capsys, kubeconfig, "-A", "--detail")
    assert rows[-1]["nvdUrl"] == "https://nvd.nist.gov/vuln/detail/CVE-2020-4444"  # filled in, as in the table


def test_detail_goes_without_by(capsys: pytest.CaptureFixture[str], kubeconfig: pathlib.Path) -> None:
    assert cli.main(["findings", "--kubeconfig", str(kubeconfig), "--detail", "--by", "pipeline"]) == 2
    assert "--detail" in capsys.readouterr().err
