#!/usr/bin/env bash
# Emit (or apply) the `replace` directives needed to depend on k8s.io/kubernetes
# as a library/tool module.
#
# k8s.io/kubernetes's go.mod requires its staging modules (k8s.io/api,
# k8s.io/apimachinery, k8s.io/client-go, ...) at v0.0.0 and replaces them with
# ./staging/src/... paths, which only work inside the kubernetes repository.
# Replace directives of dependencies are ignored, so a consuming module has to
# map every staging module to its published tag (v1.X.Y -> v0.X.Y) itself.
#
# Usage:
#   gen-replaces.sh [K8S_VERSION]          print `replace` lines to stdout
#   gen-replaces.sh --apply [K8S_VERSION]  rewrite ./go.mod (next to this script)
#                                          with `go mod edit -replace`
# K8S_VERSION defaults to the k8s.io/kubernetes version required by ./go.mod.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

apply=0
if [[ ${1:-} == --apply ]]; then
  apply=1
  shift
fi

k8s_version=${1:-}
if [[ -z $k8s_version ]]; then
  k8s_version=$(cd "$here" && go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Require") or []:
    if r["Path"] == "k8s.io/kubernetes":
        print(r["Version"])
')
fi
if [[ ! $k8s_version =~ ^v1\.[0-9]+\.[0-9]+$ ]]; then
  echo "gen-replaces.sh: need a release version like v1.34.4, got '${k8s_version}'" >&2
  exit 2
fi
staging_version="v0.${k8s_version#v1.}"

# Download k8s.io/kubernetes's go.mod (outside any module, so the local go.mod
# does not get in the way) and read its replace directives.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gomod=$(cd "$tmp" && GOFLAGS= go mod download -json "k8s.io/kubernetes@${k8s_version}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')

mapfile -t modules < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]["Path"]
    if new.startswith("./staging/") or new.startswith("staging/"):
        print(r["Old"]["Path"])
' | sort -u)

if (( ${#modules[@]} == 0 )); then
  echo "gen-replaces.sh: no staging replaces found in $gomod" >&2
  exit 1
fi

if (( apply )); then
  args=()
  # Drop stale k8s.io replaces first (e.g. after a version bump).
  while read -r old; do
    [[ -n $old ]] && args+=("-dropreplace=$old")
  done < <(cd "$here" && go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["Old"]["Path"].startswith("k8s.io/"):
        print(r["Old"]["Path"])
')
  for m in "${modules[@]}"; do
    args+=("-replace=${m}=${m}@${staging_version}")
  done
  (cd "$here" && go mod edit "${args[@]}")
  echo "gen-replaces.sh: applied ${#modules[@]} replaces (${staging_version}) to $here/go.mod" >&2
else
  for m in "${modules[@]}"; do
    printf 'replace %s => %s %s\n' "$m" "$m" "$staging_version"
  done
fi
