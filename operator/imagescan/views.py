"""``imagescan findings``: the Image Builder console's findings views, in a terminal.

Why it exists: the console lets people look at scan findings four ways (all findings, by vulnerability, by
pipeline, by image), but only for one account in a browser. The operator already keeps every pipeline's
counts and worst findings in ``ImagePipeline`` status, so the same views can be built from the cluster
(``kubectl imagescan findings``) for scripting, CI and people who live in a terminal; ``--source aws``
asks Image Builder directly for the whole-account picture.

The views are pure functions from what was read (ImagePipeline statuses, or findings and aggregations from
AWS) to rows: flat dicts with stable camelCase keys, so ``-o json`` / ``-o yaml`` give exactly what the
table shows. ``--detail`` is the console's finding panel: one row per finding with every field status keeps
(the same structure as ``status.findings.top[]``), shown as a multi-line panel each. Reading the cluster or
AWS lives in small separate functions at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import pydantic
import yaml

from imagescan import GROUP, VERSION
from imagescan.aws import findings as aws_findings_api
from imagescan.models import imagepipeline as m
from imagescan.reconcile import findings as summary

SEVERITIES = summary.SEVERITIES  # the console's order: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNTRIAGED
COUNT_KEYS = (*summary.SEVERITY_FIELDS, "total")
VIEWS = ("findings", "vulnerability", "pipeline", "image", "detail")
FORMATS = ("table", "json", "yaml")
PLURAL = "imagepipelines"
NVD_URL = summary.NVD_URL

Row = dict[str, Any]


class Entry(NamedTuple):
    """One ImagePipeline object as read from the cluster."""

    namespace: str
    name: str
    status: m.ImagePipelineStatus


class FindingRef(NamedTuple):
    """A finding and where it was seen; ``namespace`` is None for findings read from AWS."""

    namespace: str | None
    pipeline: str
    image: str | None
    finding: m.Finding
    account: str | None = None
    """The AWS account of the pipeline (one operator may serve many)."""


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: ``fmt`` formats the row's ``key`` value, or the whole row when ``key`` is empty."""

    header: str
    key: str
    fmt: Callable[[Any], str] | None = None


@dataclasses.dataclass(frozen=True)
class View:
    """Rows plus how to show them as a table, or each on its own (``panel``) instead."""

    rows: list[Row]
    columns: list[Column]
    footer: str | None = None
    panel: Callable[[Row], str] | None = None


class ReadError(Exception):
    """Reading the cluster or AWS failed; the message is one line meant for the user."""


# --- helpers -------------------------------------------------------------------------------------------------


severity_rank = summary.severity_rank


def nvd_url(finding: m.Finding) -> str | None:
    """The NVD page of a CVE (computed when status has none), else whatever link status has."""
    if finding.vulnerability_id.startswith("CVE-"):
        return finding.nvd_url or NVD_URL.format(finding.vulnerability_id)
    return finding.nvd_url


def normalize_severities(severities: Iterable[str] | None) -> frozenset[str]:
    """Upper-cased severities; raises ValueError for unknown ones. Empty: no filter."""
    wanted = frozenset(s.upper() for s in severities or ())
    unknown = sorted(wanted - set(SEVERITIES))
    if unknown:
        raise ValueError(f"unknown severity {', '.join(unknown)}; use one of {', '.join(SEVERITIES)}")
    return wanted


def _image_version(image_arn: str | None) -> str | None:
    """``1.0.0/3`` from ``arn:…:image/name/1.0.0/3``."""
    if not image_arn:
        return None
    parts = image_arn.split(":", 5)[-1].split("/")
    return "/".join(parts[2:]) if len(parts) > 2 else None


def _name_from_arn(arn: str | None) -> str:
    return (arn or "").rsplit("/", 1)[-1] or "-"


def _counts(counts: m.SeverityCounts | None) -> Row:
    if counts is None:
        return dict.fromkeys(COUNT_KEYS)
    return {key: getattr(counts, key) for key in COUNT_KEYS}


def aggregation_counts(counts: dict[str, Any] | None) -> Row:
    """Counts from ListImageScanFindingAggregations: AWS breaks out only critical/high/medium (others None)."""
    if counts is None:
        return dict.fromkeys(COUNT_KEYS)
    row: Row = dict.fromkeys(COUNT_KEYS)
    for key in ("critical", "high", "medium"):
        row[key] = int(counts.get(key) or 0)
    row["total"] = int(counts.get("all") or 0)
    return row


def _has_severity(row: Row, severities: frozenset[str]) -> bool:
    """Whether a count row has findings of the wanted severities; a count AWS does not break out (None) does not
    rule a row out, a row with no counts at all does."""
    if not severities:
        return True
    if not row.get("total"):  # nothing known (no status yet), or no findings at all
        return False
    values = [row.get(s.lower()) for s in severities]
    return any(v is None or v > 0 for v in values)


def _ready(status: m.ImagePipelineStatus) -> str | None:
    for condition in status.conditions:
        if condition.type == "Ready":
            return str(condition.status)
    return None


# --- views ---------------------------------------------------------------------------------------------------


def cluster_findings(entries: Iterable[Entry]) -> list[FindingRef]:
    """Every finding each pipeline keeps in ``status.findings.top`` (its latest image's worst)."""
    refs: list[FindingRef] = []
    for entry in entries:
        findings = entry.status.findings
        if findings is None:
            continue
        image = findings.latest_image.version if findings.latest_image else None
        account = entry.status.pipeline.account_id if entry.status.pipeline else None
        refs.extend(FindingRef(entry.namespace, entry.name, image, f, account) for f in findings.top)
    return refs


def findings_rows(refs: Iterable[FindingRef], severities: frozenset[str] = frozenset()) -> list[Row]:
    """All findings: one row each, worst severity first, then highest Inspector score."""
    chosen = [r for r in refs if not severities or r.finding.severity.upper() in severities]
    chosen.sort(key=lambda r: (*summary.worst_first(r.finding), r.namespace or "", r.pipeline, r.image or ""))
    rows: list[Row] = []
    for ref in chosen:
        f = ref.finding
        package = f.package or m.PackageRef()
        rows.append({
            "namespace": ref.namespace,
            "pipeline": ref.pipeline,
            "account": ref.account,
            "image": ref.image,
            "vulnerabilityId": f.vulnerability_id,
            "severity": f.severity,
            "inspectorScore": f.inspector_score,
            "cvss": f.cvss.base_score if f.cvss else None,
            "cvssSource": f.cvss.source if f.cvss else None,
            "package": package.name,
            "installedVersion": package.installed_version,
            "fixedInVersion": package.fixed_in_version,
            "fixAvailable": f.fix_available,
            "vendorPublishedAt": f.vendor_published_at,
            "nvdUrl": nvd_url(f),
        })
    return rows


def detail_rows(refs: Iterable[FindingRef], severities: frozenset[str] = frozenset()) -> list[Row]:
    """All findings in the order of ``findings_rows``, each with where it was seen and every field status keeps
    of it (``status.findings.top[]``'s structure; a CVE's NVD link filled in)."""
    chosen = [r for r in refs if not severities or r.finding.severity.upper() in severities]
    chosen.sort(key=lambda r: (*summary.worst_first(r.finding), r.namespace or "", r.pipeline, r.image or ""))
    return [
        {"namespace": ref.namespace, "pipeline": ref.pipeline, "account": ref.account, "image": ref.image,
         **ref.finding.model_copy(update={"nvd_url": nvd_url(ref.finding)}).to_k8s()}
        for ref in chosen
    ]


def vulnerability_rows(refs: Iterable[FindingRef], severities: frozenset[str] = frozenset()) -> list[Row]:
    """By vulnerability: one row per id across pipelines; most pipelines, then worst severity first."""
    groups: dict[str, list[FindingRef]] = {}
    for ref in refs:
        if severities and ref.finding.severity.upper() not in severities:
            continue
        groups.setdefault(ref.finding.vulnerability_id, []).append(ref)
    rows: list[Row] = []
    for vulnerability_id, found in groups.items():
        findings = [r.finding for r in found]
        pipelines = sorted({(r.namespace or "", r.pipeline) for r in found})
        scores = [f.inspector_score for f in findings if f.inspector_score is not None]
        cvss = [f.cvss.base_score for f in findings if f.cvss and f.cvss.base_score is not None]
        fixed = sorted({f.package.fixed_in_version for f in findings if f.package and f.package.fixed_in_version})
        rows.append({
            "vulnerabilityId": vulnerability_id,
            "severity": min((f.severity for f in findings), key=severity_rank),
            "inspectorScore": max(scores) if scores else None,
            "cvss": max(cvss) if cvss else None,
            "pipelines": len(pipelines),
            "pipelineNames": [f"{ns}/{name}" if ns else name for ns, name in pipelines],
            "packages": sorted({f.package.name for f in findings if f.package and f.package.name}),
            "fixedInVersions": fixed,
            "nvdUrl": nvd_url(findings[0]),
        })
    rows.sort(key=lambda r: (-r["pipelines"], severity_rank(r["severity"]), -(r["inspectorScore"] or 0.0),
                             r["vulnerabilityId"]))
    return rows


def pipeline_rows(entries: Iterable[Entry], severities: frozenset[str] = frozenset()) -> list[Row]:
    """By pipeline: the latest image's six severity counts per ImagePipeline object."""
    rows: list[Row] = []
    for entry in entries:
        status = entry.status
        latest = status.findings.latest_image if status.findings else None
        row: Row = {
            "namespace": entry.namespace,
            "name": entry.name,
            "awsPipeline": status.pipeline.name if status.pipeline else None,
            "account": status.pipeline.account_id if status.pipeline else None,
            "region": status.pipeline.region if status.pipeline else None,
            "pipelineArn": status.pipeline.arn if status.pipeline else None,
            "scanning": status.scanning.enabled if status.scanning else None,
            **_counts(latest.severity_counts if latest else None),
            "latestImage": latest.version if latest else None,
            "ready": _ready(status),
        }
        if _has_severity(row, severities):
            rows.append(row)
    rows.sort(key=lambda r: (r["namespace"] or "", r["name"] or "", r["awsPipeline"] or ""))
    return rows


def image_rows(entries: Iterable[Entry], severities: frozenset[str] = frozenset()) -> list[Row]:
    """By image: each pipeline's latest image, its outputs and its counts."""
    rows: list[Row] = []
    for entry in entries:
        latest = entry.status.findings.latest_image if entry.status.findings else None
        if latest is None:
            continue
        row: Row = {
            "image": latest.version,
            "imageArn": latest.arn,
            "namespace": entry.namespace,
            "pipeline": entry.name,
            "amis": list(latest.amis or []),
            "containerImages": list(latest.container_images or []),
            "scanState": latest.scan_state,
            **_counts(latest.severity_counts),
        }
        if _has_severity(row, severities):
            rows.append(row)
    rows.sort(key=lambda r: (r["namespace"] or "", r["pipeline"], r["imageArn"]))
    return rows


# --- the finding panel ---------------------------------------------------------------------------------------

_WIDTH = 100  # of wrapped prose; tables and links are never wrapped
_LABEL = 18


def panel(row: Row) -> str:
    """A finding as the console's finding panel shows it, in plain text: title, where, scores and how
    Inspector adjusted them, description, packages, fix, related ids, dates and links."""
    finding = m.Finding.model_validate(row)
    where = "/".join(part for part in (row.get("namespace"), row.get("pipeline")) if part)
    title = finding.title or finding.vulnerability_id
    lines = [title, "=" * min(_WIDTH, len(title))]
    lines += _fields([
        ("Vulnerability", finding.vulnerability_id),
        ("Severity", " ".join(filter(None, [finding.severity, _paren("vendor", finding.vendor_severity)]))),
        ("Pipeline", " ".join(filter(None, [where, _paren("image", row.get("image"))]))),
        ("Account", row.get("account")),
        ("Fix available", finding.fix_available),
    ])
    lines += _scores(finding)
    if finding.description:
        lines += ["Description:", *textwrap.wrap(finding.description, _WIDTH, initial_indent="  ",
                                                 subsequent_indent="  ")]
    lines += _packages(finding)
    remediation = finding.remediation or m.Remediation()
    omitted = finding.omitted or m.Omitted()
    lines += _wrapped("Remediation", remediation.text)
    lines += _fields([
        ("", remediation.url) if remediation.text else ("Remediation", remediation.url),
        ("Related", _listed(finding.related_vulnerabilities, omitted.related_vulnerabilities)),
        ("Published", _date(finding.vendor_published_at) if finding.vendor_published_at else None),
        ("Vendor updated", _date(finding.vendor_updated_at) if finding.vendor_updated_at else None),
        ("First observed", _date(finding.first_observed_at) if finding.first_observed_at else None),
        ("Source", finding.source), ("NVD", finding.nvd_url),
    ])
    links = finding.reference_urls or []
    lines += _fields([("References" if i == 0 else "", url) for i, url in enumerate(links)])
    if omitted.reference_urls:
        lines += _fields([("" if links else "References", f"(+{omitted.reference_urls} more not kept)")])
    if finding.trimmed:
        lines.append("(detail left out to keep status within 32 KiB; --source aws --detail shows all of it)")
    return "\n".join(lines) + "\n"


def _fields(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """``Label:  value`` lines, aligned; pairs without a value are left out (an empty label continues)."""
    return [f"{label + ':' if label else '':<{_LABEL}}{value}" for label, value in pairs
            if value is not None and value != ""]


def _wrapped(label: str, text: str | None) -> list[str]:
    """Prose after a label, wrapped under the values' column."""
    if not text:
        return []
    lines = textwrap.wrap(text, _WIDTH - _LABEL)
    return _fields([(label, lines[0]), *(("", line) for line in lines[1:])])


def _paren(label: str, value: Any) -> str | None:
    return f"({label} {value})" if value else None


def _listed(values: list[str] | None, more: int | None) -> str | None:
    if not values:
        return None
    return ", ".join(values) + (f" (+{more} more)" if more else "")


def _scores(finding: m.Finding) -> list[str]:
    """Inspector score against the published CVSS, and what Inspector changed to get from one to the other."""
    cvss = finding.cvss or m.CvssScore()
    adjusted = finding.adjusted_cvss or m.AdjustedCvss()
    published = None
    if cvss.base_score is not None:
        about = ", ".join(filter(None, [cvss.source, f"CVSS {cvss.version}" if cvss.version else None]))
        published = _score(cvss.base_score) + (f" ({about})" if about else "")
    score, base = finding.inspector_score, cvss.base_score
    inspector = _score(score) if score is not None else None
    if inspector and base is not None and score is not None and score != base:
        inspector += f" (adjusted {'down' if score < base else 'up'} from CVSS {_score(base)})"
    lines = _fields([
        ("Inspector score", inspector),
        ("CVSS base score", published),
        ("CVSS vector", cvss.vector),
        ("Adjusted vector", adjusted.vector),
        ("Score source", ", ".join(filter(None, [
            f"score {adjusted.score_source}" if adjusted.score_source else None,
            f"CVSS {adjusted.cvss_source}" if adjusted.cvss_source else None])) or None),
    ])
    if adjusted.adjustments:
        lines.append("Adjustments:")
        for adjustment in adjusted.adjustments:
            lines += textwrap.wrap(f"{adjustment.metric or '?'}: {adjustment.reason or ''}".rstrip(": "), _WIDTH,
                                   initial_indent="  - ", subsequent_indent="    ")
    return lines


def _packages(finding: m.Finding) -> list[str]:
    packages = finding.packages or ([finding.package] if finding.package else [])
    if not packages:
        return []
    rows = [{"name": p.name, "installedVersion": p.installed_version, "fixedInVersion": p.fixed_in_version,
             "packageManager": p.package_manager, "filePath": p.file_path} for p in packages]
    cols = [Column("PACKAGE", "name"), Column("INSTALLED", "installedVersion"), Column("FIXED-IN", "fixedInVersion"),
            Column("MANAGER", "packageManager"), Column("PATH", "filePath")]
    more = (finding.omitted.packages if finding.omitted else None) or 0
    lines = ["Packages:", *("  " + line for line in table(rows, cols).splitlines())]
    return lines + ([f"  (+{more} more not kept)"] if more else [])


# --- tables --------------------------------------------------------------------------------------------------


def _date(value: Any) -> str:
    return str(value)[:10] if value else "-"


def _score(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


def _arn_field(arn: Any, index: int) -> str | None:
    """A field of an ARN (3: region, 4: account), None if it is not one."""
    parts = str(arn or "").split(":")
    return parts[index] if len(parts) > 5 else None


def _outputs(row: Row) -> str:
    return ",".join([*(row.get("amis") or []), *(row.get("containerImages") or [])]) or "-"


_COUNT_COLUMNS = [Column(key.upper(), key) for key in COUNT_KEYS]


def columns(view: str, *, namespaced: bool, source: str = "cluster") -> list[Column]:
    """Table columns of a view; NAMESPACE only across namespaces (like kubectl), IMAGE for AWS findings."""
    ns = [Column("NAMESPACE", "namespace")] if namespaced and source == "cluster" else []
    if view == "findings":
        image = [Column("IMAGE", "image")] if source == "aws" else []
        return [
            *ns, Column("PIPELINE", "pipeline"), *image, Column("VULNERABILITY", "vulnerabilityId"),
            Column("SEVERITY", "severity"), Column("INSPECTOR", "inspectorScore", _score),
            Column("CVSS", "cvss", _score), Column("PACKAGE", "package"), Column("INSTALLED", "installedVersion"),
            Column("FIXED-IN", "fixedInVersion"), Column("FIX", "fixAvailable"),
            Column("PUBLISHED", "vendorPublishedAt", _date), Column("NVD", "nvdUrl"),
        ]
    if view == "vulnerability":
        return [
            Column("VULNERABILITY", "vulnerabilityId"), Column("SEVERITY", "severity"),
            Column("INSPECTOR", "inspectorScore", _score), Column("CVSS", "cvss", _score),
            Column("PIPELINES", "pipelines"), Column("FIXED-IN", "fixedInVersions"), Column("NVD", "nvdUrl"),
        ]
    if view == "pipeline":
        if source == "aws":
            return [Column("AWS PIPELINE", "awsPipeline"), Column("ACCOUNT", "account"), Column("REGION", "region"),
                    Column("SCANNING", "scanning"), *_COUNT_COLUMNS]
        return [
            *ns, Column("NAME", "name"), Column("AWS PIPELINE", "awsPipeline"), Column("ACCOUNT", "account"),
            Column("REGION", "region"), Column("SCANNING", "scanning"),
            *_COUNT_COLUMNS, Column("LATEST-IMAGE", "latestImage"), Column("READY", "ready"),
        ]
    if view == "image":
        return [
            Column("IMAGE", "image"), Column("ARN", "imageArn"), *ns, Column("PIPELINE", "pipeline"),
            Column("AMIS / CONTAINER IMAGES", "", _outputs), *_COUNT_COLUMNS,
        ]
    raise ValueError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")


def footer(view: str, source: str) -> str:
    """What the numbers mean, under the table."""
    if view == "detail":
        if source == "aws":
            return "Findings from ListImageScanFindings: every build of every pipeline in the account and region."
        return ("Detail as kept in status (status.findings.top, N = spec.findings.top); findings marked as left out "
                "lost detail to keep status within 32 KiB: --source aws --detail reads them whole.")
    if source == "aws":
        if view in ("pipeline", "image"):
            scope = "every build of each pipeline" if view == "pipeline" else "each pipeline's latest build"
            return (f"Counts from ListImageScanFindingAggregations ({scope}); AWS reports only critical, high and "
                    "medium separately, so low, informational and untriaged show '-'.")
        return "Findings from ListImageScanFindings: every build of every pipeline in the account and region."
    if view in ("pipeline", "image"):
        return "Counts are complete for each pipeline's latest image (status.findings.latestImage.severityCounts)."
    return ("Lists each pipeline's worst N findings as kept in status (status.findings.top, N = "
            "spec.findings.top); use --by pipeline for complete counts or --source aws for every finding.")


def _cell(row: Row, column: Column) -> str:
    value = row.get(column.key) if column.key else None
    if column.fmt is not None:
        return column.fmt(row if not column.key else value)
    if value is None or value == []:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def table(rows: Sequence[Row], cols: Sequence[Column]) -> str:
    """Plain aligned text like kubectl: upper-case headers, three spaces between columns, no colour."""
    cells = [[c.header for c in cols], *[[_cell(row, c) for c in cols] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    return "\n".join(lines) + "\n"


def render(view: View, output: str) -> str:
    """The rows as a table (with the footer), or as JSON / YAML lists of objects."""
    if output == "json":
        return json.dumps(view.rows, indent=2) + "\n"
    if output == "yaml":
        return yaml.safe_dump(view.rows, sort_keys=False, default_flow_style=False) if view.rows else "[]\n"
    if output != "table":
        raise ValueError(f"unknown output {output!r}; use one of {', '.join(FORMATS)}")
    if not view.rows:
        return "No findings.\n"
    text = "\n".join(view.panel(row) for row in view.rows) if view.panel else table(view.rows, view.columns)
    return text + (f"\n{view.footer}\n" if view.footer else "")


def build(view: str, *, entries: Sequence[Entry], severities: frozenset[str], namespaced: bool) -> View:
    """A view of ImagePipeline statuses read from the cluster."""
    rows: list[Row]
    if view == "detail":
        return View(detail_rows(cluster_findings(entries), severities), [], footer(view, "cluster"), panel)
    if view == "findings":
        rows = findings_rows(cluster_findings(entries), severities)
    elif view == "vulnerability":
        rows = vulnerability_rows(cluster_findings(entries), severities)
    elif view == "pipeline":
        rows = pipeline_rows(entries, severities)
    elif view == "image":
        rows = image_rows(entries, severities)
    else:
        raise ValueError(f"unknown view {view!r}")
    return View(rows, columns(view, namespaced=namespaced), footer(view, "cluster"))


# --- reading the cluster -------------------------------------------------------------------------------------


def parse_entries(items: Iterable[dict[str, Any]], warn: Callable[[str], None] | None = None) -> list[Entry]:
    """(namespace, name, status) of ImagePipeline objects; a missing or unreadable status counts as empty."""
    entries: list[Entry] = []
    for obj in items:
        meta = obj.get("metadata") or {}
        try:
            status = m.ImagePipelineStatus.model_validate(obj.get("status") or {})
        except pydantic.ValidationError as exc:
            if warn is not None:
                warn(f"{meta.get('namespace')}/{meta.get('name')}: status not understood "
                     f"({exc.error_count()} problem(s)); shown as empty")
            status = m.ImagePipelineStatus()
        entries.append(Entry(str(meta.get("namespace") or ""), str(meta.get("name") or ""), status))
    return entries


def read_cluster(
    kubeconfig: str | None, namespace: str | None, all_namespaces: bool, names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """ImagePipeline objects of one namespace (default: the context's, else "default") or all, filtered by name."""
    import kubernetes.client
    import kubernetes.config
    import urllib3

    # The client reads $KUBECONFIG once at import; read it now so the current environment counts.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        _, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        ns = namespace or ((active or {}).get("context") or {}).get("namespace") or "default"
        client = kubernetes.config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ReadError(f"cannot load kubeconfig: {exc}") from None
    try:
        api = kubernetes.client.CustomObjectsApi(client)
        if all_namespaces:
            listed = cast(dict[str, Any], api.list_cluster_custom_object(GROUP, VERSION, PLURAL))
        else:
            listed = cast(dict[str, Any], api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL))
    except kubernetes.client.ApiException as exc:
        raise ReadError(f"listing {PLURAL}.{GROUP}: {exc.status} {exc.reason}") from None
    except urllib3.exceptions.HTTPError as exc:
        raise ReadError(f"cannot reach the Kubernetes API: {exc}") from None
    finally:
        client.close()
    items = [dict(i) for i in listed.get("items", [])]
    if names:
        items = [i for i in items if (i.get("metadata") or {}).get("name") in names]
    return items


# --- reading AWS ---------------------------------------------------------------------------------------------


def aws_client(region: str | None, endpoint_url: str | None) -> Any:
    """An Image Builder client (botocore's standard retries plus the operator's throttle handling)."""
    from imagescan.aws import clients

    region = region or os.environ.get("AWS_REGION") or None
    try:
        return clients.Clients(clients.Settings(default_region=region, endpoint_url=endpoint_url,
                                                connect_timeout=3.0, read_timeout=30.0)).imagebuilder()
    except ValueError:
        raise ReadError("no AWS region: pass --region or set AWS_REGION") from None


def _aws_call(fn: Callable[[], Any]) -> Any:
    """Run boto3 calls, turning any AWS failure into one readable line."""
    from imagescan.aws import errors

    try:
        return fn()
    except ReadError:
        raise
    except Exception as exc:
        try:
            error = errors.from_exception(exc)
        except Exception:
            raise ReadError(f"{type(exc).__name__}: {exc}") from None
        raise ReadError(error.message) from None


def aws_pipelines(client: Any, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every Image Builder pipeline of the account and region (only the named ones if names are given)."""
    def read() -> list[dict[str, Any]]:
        pipelines: list[dict[str, Any]] = []
        for page in client.get_paginator("list_image_pipelines").paginate():
            pipelines.extend(page.get("imagePipelineList", []))
        return pipelines
    pipelines: list[dict[str, Any]] = _aws_call(read)
    return [p for p in pipelines if not names or p.get("name") in names]


def aws_aggregations(client: Any, filter_name: str | None, values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """ListImageScanFindingAggregations counts keyed by filter value (10 values a call; no filter: the account)."""
    key_of = {"imagePipelineArn": ("imagePipelineAggregation", "imagePipelineArn"),
              "imageBuildVersionArn": ("imageAggregation", "imageBuildVersionArn"),
              "vulnerabilityId": ("vulnerabilityIdAggregation", "vulnerabilityId"),
              None: ("accountAggregation", "accountId")}
    kind, field = key_of[filter_name]
    calls: list[dict[str, Any]] = [{}] if filter_name is None else [
        {"filter": {"name": filter_name, "values": list(values[i:i + 10])}} for i in range(0, len(values), 10)
    ]

    def read() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        paginator = client.get_paginator("list_image_scan_finding_aggregations")
        for params in calls:
            for page in paginator.paginate(**params):
                for response in page.get("responses", []):
                    aggregation = response.get(kind)
                    if aggregation:
                        found[str(aggregation.get(field))] = dict(aggregation.get("severityCounts") or {})
        return found
    result: dict[str, dict[str, Any]] = _aws_call(read)
    return result


def aws_latest_images(client: Any, pipelines: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest build of each pipeline (an available one if any), keyed by pipeline ARN."""
    def read() -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        paginator = client.get_paginator("list_image_pipeline_images")
        for pipeline in pipelines:
            images = [i for page in paginator.paginate(imagePipelineArn=pipeline["arn"])
                      for i in page.get("imageSummaryList", [])]
            if not images:
                continue
            available = [i for i in images if (i.get("state") or {}).get("status") == "AVAILABLE"]
            latest[str(pipeline["arn"])] = max(available or images, key=lambda i: str(i.get("dateCreated") or ""))
        return latest
    result: dict[str, dict[str, Any]] = _aws_call(read)
    return result


def aws_findings(client: Any, severities: frozenset[str] = frozenset(), names: Sequence[str] = ()) -> list[FindingRef]:
    """ListImageScanFindings pages: one listing per wanted severity (the API takes one filter), else all."""
    filters: list[list[dict[str, Any]] | None] = [
        [{"name": "severity", "values": [s]}] for s in SEVERITIES if s in severities
    ] or [None]

    def read() -> list[FindingRef]:
        refs: list[FindingRef] = []
        paginator = client.get_paginator("list_image_scan_findings")
        for flt in filters:
            params: dict[str, Any] = {"PaginationConfig": {"PageSize": aws_findings_api.page_size(client)}}
            if flt is not None:
                params["filters"] = flt
            for page in paginator.paginate(**params):
                for raw in page.get("findings", []):
                    pipeline = _name_from_arn(raw.get("imagePipelineArn"))
                    if names and pipeline not in names:
                        continue
                    refs.append(FindingRef(None, pipeline, _image_version(raw.get("imageBuildVersionArn")),
                                           summary.summarize(raw), raw.get("awsAccountId")))
        return refs
    result: list[FindingRef] = _aws_call(read)
    return result


def build_aws(
    view: str, client: Any, *, severities: frozenset[str], names: Sequence[str] = (),
) -> View:
    """A view of the whole account and region, read from Image Builder."""
    rows: list[Row]
    if view == "detail":
        return View(detail_rows(aws_findings(client, severities, names)), [], footer(view, "aws"), panel)
    if view in ("findings", "vulnerability"):
        refs = aws_findings(client, severities, names)
        rows = findings_rows(refs) if view == "findings" else vulnerability_rows(refs)
    elif view == "pipeline":
        pipelines = aws_pipelines(client, names)
        counts = aws_aggregations(client, "imagePipelineArn", [str(p["arn"]) for p in pipelines])
        rows = []
        for p in pipelines:
            row: Row = {
                "namespace": None, "name": None, "awsPipeline": p.get("name"),
                "account": _arn_field(p.get("arn"), 4), "region": _arn_field(p.get("arn"), 3),
                "pipelineArn": p.get("arn"),
                "scanning": (p.get("imageScanningConfiguration") or {}).get("imageScanningEnabled"),
                **aggregation_counts(counts.get(str(p["arn"]))), "latestImage": None, "ready": None,
            }
            if _has_severity(row, severities):
                rows.append(row)
        rows.sort(key=lambda r: str(r["awsPipeline"]))
    elif view == "image":
        pipelines = aws_pipelines(client, names)
        latest = aws_latest_images(client, pipelines)
        counts = aws_aggregations(client, "imageBuildVersionArn", [str(i["arn"]) for i in latest.values()])
        rows = []
        for pipeline_arn, image in latest.items():
            outputs = image.get("outputResources") or {}
            row = {
                "image": _image_version(image.get("arn")) or image.get("version"),
                "imageArn": image.get("arn"), "namespace": None, "pipeline": _name_from_arn(pipeline_arn),
                "amis": [str(a["image"]) for a in outputs.get("amis") or [] if a.get("image")],
                "containerImages": [u for c in outputs.get("containers") or [] for u in c.get("imageUris") or []],
                "scanState": None,
                **aggregation_counts(counts.get(str(image.get("arn")))),
            }
            if _has_severity(row, severities):
                rows.append(row)
        rows.sort(key=lambda r: (r["pipeline"], str(r["imageArn"])))
    else:
        raise ValueError(f"unknown view {view!r}")
    return View(rows, columns(view, namespaced=False, source="aws"), footer(view, "aws"))
