"""An emulated Kubernetes API server for tests, benchmarks and the local playground.

This is an **emulator**, not Kubernetes: an in-memory, single-process HTTP server that answers
the subset of the Kubernetes REST API the operator, kopf and the ``kubernetes`` Python client
use, with the semantics they depend on. It is built on kmock's ``KubernetesEmulator`` (kmock 0.8):
the handler is a kmock handler, so kmock's request log, reaction DSL (error injection) and object
history views keep working; the parts of kmock that do not behave like a real API server are
replaced (see :mod:`.http` for the list: request parsing, the stock object state machine,
discovery and watch streaming are our own aiohttp handlers inside the same server).
kmock's ``Server`` is not used either: it monkeypatches aiohttp's DNS resolution globally,
which is not safe for several emulators in threads; we run our own aiohttp ``ServerRunner``.

What it does (real API semantics):

* discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}[/{version}]``, ``/version``; the
  aggregated ``apidiscovery.k8s.io/v2`` document for clients that ask for it);
* core ``namespaces``, ``events``, ``secrets``, ``configmaps``; ``apps/v1`` ``deployments`` (with
  ``/status`` and ``/scale``); ``events.k8s.io/v1`` events; ``coordination.k8s.io/v1`` leases;
  ``apiextensions.k8s.io/v1`` CRDs (creating one serves its resource); kopf's ``kopfpeerings`` and
  ``clusterkopfpeerings``; any CRD via :meth:`Emulator.register_crd`;
* uid, creationTimestamp, generation, a global monotonically increasing resourceVersion,
  ``generateName``, 201 on create, 404/409/410/422 ``kind: Status`` errors shaped like the real ones;
* optimistic concurrency (409 Conflict on a stale ``metadata.resourceVersion``), JSON patch with
  ``test`` (a failed test is 422 like the real server), merge patch, strategic merge patch (with the
  merge keys of common built-in lists), ``dryRun=All``;
* status subresource separation and ``metadata.generation`` bumps on spec changes only;
* finalizers: deletion sets ``deletionTimestamp`` and removes the object when finalizers are gone;
  no new finalizers on deleting objects; background cascading deletion via ``ownerReferences``;
  namespace deletion deletes its content;
* lists with label/field selectors, ``limit``/``continue``; watches with ``resourceVersion``
  (replay from a bounded history, 410 Gone when too old), bookmarks, ``sendInitialEvents``,
  ``timeoutSeconds``, selector-aware ADDED/DELETED transitions;
* structural-schema pruning, defaulting and validation of custom resources (see :mod:`.schema`),
  CEL ``x-kubernetes-validations`` with a real CEL implementation (:mod:`.cel`);
* ``/openapi/v2`` and ``/openapi/v3`` built from the served types (:mod:`.openapi`), Table
  responses (:mod:`.tables`), ``fieldValidation=Strict|Warn|Ignore``, server-side apply and
  ``managedFields`` (:mod:`.managed`), namespaces as real objects (404 for a missing one);
* a simulated Deployment controller with per-Deployment behaviour (see :mod:`.deployments`);
* ``batch/v1`` Jobs with a simulated Job controller: complete or fail after a delay chosen by an
  annotation on the Job or its pod template (see :mod:`.jobs`).

What it does NOT do (the full list is in docs/emulator.md): no authentication beyond an optional
fixed bearer token, no RBAC, no admission (webhooks, quotas, limit ranges), no pods, ReplicaSets,
Services or any other controller than the Deployment and Job ones, no protobuf/CBOR objects, no TLS, no
CRD conversion webhooks (versions are converted by rewriting ``apiVersion``), no validation of
built-in kinds beyond names, labels, unknown fields and the basics of Deployments, no ``format``
checks, and lists are always served from the latest state
(``resourceVersion``/``resourceVersionMatch`` on lists are ignored).
Core ``v1`` events and ``events.k8s.io/v1`` events are stored separately.
"""

from __future__ import annotations

from .deployments import DeploymentBehaviour, DeploymentController, compute_status, deployment_manifest
from .errors import ApiError, FieldError
from .http import ApiServer, EmulatorHandler, RequestLog, RequestRecord
from .jobs import DELAY_ANNOTATION, OUTCOME_ANNOTATION, JobBehaviour, JobController
from .resources import BUILTIN_RESOURCES, ResourceType, ScaleSpec, resources_from_crd
from .server import DEFAULT_TOKEN, BackgroundEmulator, Emulator, load_crds
from .store import ObjectStore, WatchEvent

__all__ = [
    "BUILTIN_RESOURCES",
    "DEFAULT_TOKEN",
    "DELAY_ANNOTATION",
    "OUTCOME_ANNOTATION",
    "ApiError",
    "ApiServer",
    "BackgroundEmulator",
    "DeploymentBehaviour",
    "DeploymentController",
    "Emulator",
    "EmulatorHandler",
    "FieldError",
    "JobBehaviour",
    "JobController",
    "ObjectStore",
    "RequestLog",
    "RequestRecord",
    "ResourceType",
    "ScaleSpec",
    "WatchEvent",
    "compute_status",
    "deployment_manifest",
    "load_crds",
    "resources_from_crd",
]
