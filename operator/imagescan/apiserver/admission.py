"""
Validating admission webhooks, called the way kube-apiserver calls them.

``admissionregistration.k8s.io/v1`` ValidatingWebhookConfigurations are stored like any object; while
at least one exists, every create, update and delete is reviewed, after defaulting, pruning and
validation and right before it is persisted, by the webhooks whose ``rules`` (apiGroups, apiVersions,
resources with ``name/subresource`` forms, operations, scope), ``namespaceSelector`` and ``objectSelector``
match it: an ``AdmissionReview`` v1 POSTed over HTTPS, trusting ``clientConfig.caBundle``, with
``timeoutSeconds`` (default 10) as the deadline. The answers count as in the real server:

* ``allowed: false`` refuses the request with ``response.status.code`` (default 403) and the message
  ``admission webhook "<name>" denied the request: <message>``;
* ``warnings`` reach the client as ``Warning: 299 - "<text>"`` headers (what kubectl prints);
* a call that fails (refused, timed out, untrusted certificate, a malformed answer) admits the request
  under ``failurePolicy: Ignore`` and refuses it with 500 ``failed calling webhook "<name>": …`` under
  ``Fail``, the default;
* a dry run (``?dryRun=All``, ``kubectl --dry-run=server``) is refused with 400 by any matching webhook
  whose ``sideEffects`` is not ``None`` or ``NoneOnDryRun``.

``clientConfig.url`` is called as is. A ``clientConfig.service`` has no cluster network to resolve in:
the ``service_urls`` given to :class:`~imagescan.apiserver.ApiServer` map ``"<namespace>/<name>:<port>"``
(or ``"<namespace>/<name>"``) to a base URL such as ``https://127.0.0.1:9443``; the service's ``path``
is appended and the certificate must be valid for ``<name>.<namespace>.svc``, as in a cluster. An
unmapped service fails the call (``service "<name>" not found`` / ``no endpoints available``).

Not emulated: mutating webhooks, ``matchConditions`` (CEL; such webhooks are called unconditionally),
``matchPolicy: Equivalent`` conversions (every resource here is served in one version only), the
``ValidatingAdmissionPolicy`` API, and webhooks on deletions cascaded by a namespace or CRD. Webhook
configurations themselves are never reviewed, as in the real server.

How it hooks in: the store is synchronous, calls to webhooks are not. :meth:`Admission.run` runs a write
with :attr:`Store.gate <imagescan.apiserver.store.Store.gate>` set: the gate stops the write before it is
persisted if a webhook must review it; once the webhooks agree, the write runs again and the gate lets
the reviewed object through, if nothing changed the stored object meanwhile (otherwise it is reviewed
anew, as the real server re-runs admission when its optimistic update retries). With no configuration
stored, nothing of this runs at all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from imagescan.apiserver import store

logger = logging.getLogger(__name__)

T = TypeVar('T')

GROUP = 'admissionregistration.k8s.io'
CONFIGURATIONS = (GROUP, 'validatingwebhookconfigurations')
# Who the requests come from: there is no authentication here, so always the cluster's admin.
USER_INFO = {'username': 'kubernetes-admin', 'groups': ['system:masters', 'system:authenticated']}
DEFAULT_TIMEOUT = 10
_ATTEMPTS = 5
_DRY_RUN_SAFE = ('None', 'NoneOnDryRun')


@dataclass(frozen=True)
class Request:
    """What the HTTP layer knows of a write that the store does not."""

    version: str
    subresource: str | None = None
    dry_run: bool = False
    query: Mapping[str, str] | None = None
    body: Any = None  # DeleteOptions, for deletions


class Rejection(store.ApiError):
    """A refusal by (or a failed call to) a webhook; the warnings gathered so far still reach the client."""

    def __init__(self, code: int, reason: str, message: str, *, warnings: list[str],
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(code, reason, message, details=details)
        self.warnings = warnings


class _Pending(Exception):
    """Not an error: stops a write before it is persisted, so that webhooks can review it."""

    def __init__(self, change: store.Change, hooks: list[store.Obj]) -> None:
        super().__init__(change.operation)
        self.change, self.hooks = change, hooks


class _CallFailed(Exception):
    pass


def warning_header(text: str) -> str:
    """A ``Warning`` header value (RFC 7234) as kube-apiserver writes it."""
    escaped = text.replace('\\', '\\\\').replace('"', '\\"')
    return f'299 - "{escaped}"'


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` (matchLabels, matchExpressions) against labels; empty matches all."""
    if not isinstance(selector, Mapping):
        return True
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get('matchExpressions') or []:
        key, operator = expression.get('key'), expression.get('operator')
        values = expression.get('values') or []
        if operator == 'In':
            matched = key in labels and labels[key] in values
        elif operator == 'NotIn':
            matched = key not in labels or labels[key] not in values
        elif operator == 'Exists':
            matched = key in labels
        elif operator == 'DoesNotExist':
            matched = key not in labels
        else:
            matched = False  # the real server refuses such a selector when the configuration is stored
        if not matched:
            return False
    return True


def rule_matches(rule: Mapping[str, Any], operation: str, group: str, version: str, resource: str,
                 subresource: str | None, namespaced: bool) -> bool:
    """One entry of a webhook's ``rules``, as ``admissionregistration/v1.RuleWithOperations``."""
    def listed(field: str, value: str) -> bool:
        values = rule.get(field) or []
        return '*' in values or value in values

    if not (listed('operations', operation) and listed('apiGroups', group) and listed('apiVersions', version)):
        return False
    scope = rule.get('scope') or '*'
    if scope != '*' and scope != ('Namespaced' if namespaced else 'Cluster'):
        return False
    # "*" is every resource but no subresource; "*/*" everything; "pods/*" every subresource of pods.
    wanted = ({resource, '*'} if subresource is None else
              {f'{resource}/{subresource}', f'*/{subresource}', f'{resource}/*', '*/*'})
    return any(entry in wanted for entry in rule.get('resources') or [])


def _labels(obj: store.Obj | None) -> dict[str, str]:
    labels = ((obj or {}).get('metadata') or {}).get('labels')
    return dict(labels) if isinstance(labels, dict) else {}


class Admission:
    """The webhook configurations of one store, and the calls to them."""

    def __init__(self, db: store.Store, *, service_urls: Mapping[str, str] | None = None) -> None:
        self.db = db
        self.service_urls = dict(service_urls or {})
        self.configurations: dict[str, store.Obj] = {}  # name -> ValidatingWebhookConfiguration
        self._contexts: dict[str, ssl.SSLContext] = {}
        db.listeners.add(self._track)
        for (group, plural, _, name), obj in db.objects.items():
            if (group, plural) == CONFIGURATIONS:
                self.configurations[name] = obj

    @property
    def active(self) -> bool:
        """Whether any write may have to be reviewed (else the HTTP layer skips :meth:`run`)."""
        return bool(self.configurations)

    def _track(self, event: store.WatchEvent | None) -> None:
        if event is None or event.type_key != CONFIGURATIONS:
            return
        name = str(event.obj['metadata']['name'])
        if event.type == 'DELETED':
            self.configurations.pop(name, None)
        else:
            self.configurations[name] = event.obj

    # --- The write, stopped and resumed --------------------------------------------------------

    async def run(self, write: Callable[[], T], request: Request) -> tuple[T | None, store.Change | None, list[str]]:
        """Run ``write`` once the webhooks matching what it stores have allowed it.

        Returns the write's result, or for dry runs (nothing persisted) the reviewed change instead, and the
        webhooks' warnings. Raises :class:`Rejection` if a webhook refuses.
        """
        approved: store.Change | None = None
        warnings: list[str] = []
        for _ in range(_ATTEMPTS):
            previous, self.db.gate = self.db.gate, functools.partial(self._gate, request, approved)
            try:
                return write(), None, warnings
            except _Pending as pending:
                change, hooks = pending.change, pending.hooks
            finally:
                self.db.gate = previous
            warnings = await self.review(change, hooks, request)
            if request.dry_run:
                return None, change, warnings
            approved = change
        raise store.ApiError(409, 'Conflict', 'the object kept changing while admission webhooks reviewed it; '
                             'please try again')

    def _gate(self, request: Request, approved: store.Change | None, change: store.Change) -> store.Obj | None:
        if approved is not None and approved.operation == change.operation \
                and approved.rtype.key == change.rtype.key and approved.old is change.old:
            return approved.new  # unchanged since the review: store what the webhooks saw (uid, name and all)
        hooks = self.matching(change, request)
        if hooks or request.dry_run:
            raise _Pending(change, hooks)
        return None

    # --- Which webhooks --------------------------------------------------------------------------

    def matching(self, change: store.Change, request: Request) -> list[store.Obj]:
        rtype = change.rtype
        if not self.configurations or rtype.group == GROUP:
            return []
        hooks: list[store.Obj] = []
        for name in sorted(self.configurations):
            for hook in self.configurations[name].get('webhooks') or []:
                if not isinstance(hook, dict):
                    continue
                if not any(rule_matches(rule, change.operation, rtype.group, request.version, rtype.plural,
                                        request.subresource, rtype.namespaced)
                           for rule in hook.get('rules') or [] if isinstance(rule, dict)):
                    continue
                if not selector_matches(hook.get('namespaceSelector'), self._namespace_labels(change)):
                    continue
                objects = [obj for obj in (change.new, change.old) if obj is not None]
                if not any(selector_matches(hook.get('objectSelector'), _labels(obj)) for obj in objects):
                    continue
                hooks.append(hook)
        return hooks

    def _namespace_labels(self, change: store.Change) -> dict[str, str]:
        obj = change.new if change.new is not None else change.old
        if change.rtype.key == ('', 'namespaces'):
            return _labels(obj)  # a namespace is matched by its own labels
        if not change.rtype.namespaced:
            return {}  # no namespaceSelector applies to cluster-scoped objects: the empty one matches all
        namespace = ((obj or {}).get('metadata') or {}).get('namespace')
        return _labels(self.db.objects.get(('', 'namespaces', '', str(namespace))))

    # --- Calling them --------------------------------------------------------------------------

    async def review(self, change: store.Change, hooks: list[store.Obj], request: Request) -> list[str]:
        """Call the webhooks concurrently; their warnings, or :class:`Rejection` by the first that refuses."""
        if request.dry_run:
            for hook in hooks:
                if hook.get('sideEffects') not in _DRY_RUN_SAFE:
                    raise Rejection(400, 'BadRequest', f'admission webhook "{hook.get("name")}" does not support '
                                    'dry run', warnings=[])
        results = await asyncio.gather(*(self._call(hook, change, request) for hook in hooks))
        warnings = [warning for hook_warnings, _ in results for warning in hook_warnings]
        for _, refusal in results:
            if refusal is not None:
                raise Rejection(refusal.code, refusal.reason, refusal.message, details=refusal.details,
                                warnings=warnings)
        return warnings

    async def _call(self, hook: store.Obj, change: store.Change,
                    request: Request) -> tuple[list[str], store.ApiError | None]:
        name = str(hook.get('name'))
        uid = str(uuid.uuid4())
        try:
            answer = await self._post(hook, self._review(uid, change, request))
            response = self._response(answer, uid)
        except _CallFailed as e:
            if hook.get('failurePolicy', 'Fail') == 'Ignore':
                logger.warning('Failed calling webhook %r, failing open: %s', name, e)
                return [], None
            return [], store.ApiError(500, 'InternalError',
                                      f'Internal error occurred: failed calling webhook "{name}": {e}')
        warnings = [str(warning) for warning in response.get('warnings') or []]
        if response['allowed']:
            return warnings, None
        status = response.get('status')
        status = status if isinstance(status, dict) else {}
        code = int(status.get('code') or 403)
        code = 403 if code < 400 else code  # a refusal is never a success
        denied = f'admission webhook "{name}" denied the request'
        explained = status.get('message') or status.get('reason')
        message = f'{denied}: {explained}' if explained else f'{denied} without explanation'
        # kube-apiserver passes the webhook's reason on as it is, empty included: kubectl then prints
        # "Error from server: ..." rather than "Error from server (Forbidden): ..." (webhookerrors.ToStatusErr).
        reason = str(status.get('reason') or '')
        return warnings, store.ApiError(code, reason, message, details=status.get('details'))

    def _review(self, uid: str, change: store.Change, request: Request) -> store.Obj:
        rtype, version = change.rtype, request.version
        obj = change.new if change.new is not None else change.old
        meta = (obj or {}).get('metadata') or {}
        resource = {'group': rtype.group, 'version': version, 'resource': rtype.plural}
        kind = {'group': rtype.group, 'version': version, 'kind': rtype.kind}
        body = request.body if change.operation == 'DELETE' and isinstance(request.body, dict) else {}
        kind_of_options = {'CREATE': 'CreateOptions', 'UPDATE': 'UpdateOptions'}.get(change.operation, 'DeleteOptions')
        options = {**body, 'apiVersion': 'meta.k8s.io/v1', 'kind': kind_of_options}
        query = request.query or {}
        if query.get('fieldManager'):
            options['fieldManager'] = query['fieldManager']
        if request.dry_run:
            options['dryRun'] = ['All']
        review: store.Obj = {
            'uid': uid, 'kind': kind, 'resource': resource, 'requestKind': kind, 'requestResource': resource,
            'name': str(meta.get('name', '')), 'operation': change.operation, 'userInfo': USER_INFO,
            'object': self._render(change.new if change.operation != 'DELETE' else None, rtype, version),
            'oldObject': self._render(change.old, rtype, version),
            'dryRun': request.dry_run, 'options': options,
        }
        if request.subresource:
            review['subResource'] = review['requestSubResource'] = request.subresource
        if rtype.namespaced and meta.get('namespace'):
            review['namespace'] = meta['namespace']
        return {'apiVersion': 'admission.k8s.io/v1', 'kind': 'AdmissionReview', 'request': review}

    def _render(self, obj: store.Obj | None, rtype: store.ResourceType, version: str) -> store.Obj | None:
        return None if obj is None else self.db.render(rtype, version, obj)

    async def _post(self, hook: store.Obj, review: store.Obj) -> Any:
        config = hook.get('clientConfig') or {}
        timeout = float(hook.get('timeoutSeconds') or DEFAULT_TIMEOUT)
        url, server_hostname = self._url(config)
        url += f'{"&" if "?" in url else "?"}timeout={timeout:g}s'  # as the real server, so webhooks know
        try:
            context = self._context(config.get('caBundle'))
            async with asyncio.timeout(timeout), aiohttp.ClientSession() as session, \
                    session.post(url, json=review, ssl=context, server_hostname=server_hostname) as reply:
                if reply.status != 200:
                    text = (await reply.text())[:200]
                    raise _CallFailed(f'received invalid webhook response: the server responded with '
                                      f'HTTP {reply.status}: {text}')
                try:
                    return await reply.json(content_type=None)
                except ValueError as e:
                    raise _CallFailed(f'received invalid webhook response: {e}') from None
        except TimeoutError:
            raise _CallFailed(f'failed to call webhook: Post "{url}": context deadline exceeded') from None
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise _CallFailed(f'failed to call webhook: Post "{url}": {e or type(e).__name__}') from None

    def _url(self, config: Mapping[str, Any]) -> tuple[str, str | None]:
        if config.get('url'):
            return str(config['url']), None
        service = config.get('service')
        if not isinstance(service, Mapping):
            raise _CallFailed('failed to call webhook: clientConfig has neither url nor service')
        name, namespace = str(service.get('name')), str(service.get('namespace'))
        port, path = int(service.get('port') or 443), str(service.get('path') or '')
        host = f'{name}.{namespace}.svc'
        base = self.service_urls.get(f'{namespace}/{name}:{port}') or self.service_urls.get(f'{namespace}/{name}')
        if base is None:
            known = ('', 'services', namespace, name) in self.db.objects
            problem = f'no endpoints available for service "{name}"' if known else f'service "{name}" not found'
            raise _CallFailed(f'failed to call webhook: Post "https://{host}:{port}{path}": {problem}')
        return base.rstrip('/') + path, host

    def _context(self, ca_bundle: Any) -> ssl.SSLContext:
        key = str(ca_bundle or '')
        if key not in self._contexts:
            try:
                cadata = base64.b64decode(key, validate=True).decode() if key else None
                context = ssl.create_default_context(cadata=cadata)
            except (binascii.Error, UnicodeDecodeError, ssl.SSLError) as e:
                raise _CallFailed(f'failed to call webhook: invalid clientConfig.caBundle: {e}') from None
            self._contexts[key] = context
        return self._contexts[key]

    @staticmethod
    def _response(answer: Any, uid: str) -> store.Obj:
        if not isinstance(answer, dict) or answer.get('apiVersion') != 'admission.k8s.io/v1' \
                or answer.get('kind') != 'AdmissionReview':
            got = f'{answer.get("apiVersion")}, Kind={answer.get("kind")}' if isinstance(answer, dict) else 'no object'
            raise _CallFailed(f'received invalid webhook response: expected webhook response of '
                              f'admission.k8s.io/v1, Kind=AdmissionReview, got {got}')
        response = answer.get('response')
        if not isinstance(response, dict):
            raise _CallFailed('received invalid webhook response: webhook response was absent')
        if response.get('uid') != uid:
            raise _CallFailed(f'received invalid webhook response: expected response.uid="{uid}", '
                              f'got "{response.get("uid")}"')
        if not isinstance(response.get('allowed'), bool):
            raise _CallFailed('received invalid webhook response: response.allowed is not a boolean')
        return response
