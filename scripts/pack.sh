#!/usr/bin/env bash
# Packs the plugin for machines without a Rust toolchain, the way esbuild and
# Bun ship native binaries: two npm tarballs in target/pack/ (or --out DIR)
#   omp-discord-<version>.tgz            the manifest and the bundle dist/index.js;
#                                        optionalDependencies names the platform package
#   omp-discord-linux-x64-<version>.tgz  bin/omp-discord, the release binary
# Needs what scripts/build.sh makes (dist/index.js and the release binary);
# --bin PATH packs another binary. Install them as docs/setup.md describes.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

target_dir=${CARGO_TARGET_DIR:-target}
out="$target_dir/pack"
bin="$target_dir/release/omp-discord"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: scripts/pack.sh [--out DIR] [--bin PATH]" >&2; exit 2 ;;
  esac
done

platform=npm/omp-discord-linux-x64
field() { node -p "require('./$1').$2"; }
version=$(field package.json version)
# The three versions must agree, or the optional dependency would not match.
for got in "$(field $platform/package.json version)" "$(field package.json 'optionalDependencies["omp-discord-linux-x64"]')" \
  "$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"; do
  if [ "$got" != "$version" ]; then
    echo "version mismatch: package.json has $version, found $got (npm/*/package.json, optionalDependencies, Cargo.toml)" >&2
    exit 1
  fi
done
for needed in dist/index.js "$bin"; do
  [ -f "$needed" ] || { echo "$needed is missing: run scripts/build.sh first" >&2; exit 1; }
done
case "$(file -b "$bin" 2>/dev/null || echo ELF)" in
  *ELF*x86-64* | ELF) ;;
  *) echo "$bin is not a Linux x86-64 binary" >&2; exit 1 ;;
esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
log "packing omp-discord $version into $out"
# The binary goes into a staged copy of the platform package, not into npm/.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp $platform/package.json $platform/README.md "$stage/"
mkdir "$stage/bin"
cp "$bin" "$stage/bin/omp-discord"
chmod 0755 "$stage/bin/omp-discord"
(cd "$stage" && npm pack --silent --pack-destination "$out" >/dev/null)
npm pack --silent --pack-destination "$out" >/dev/null
ls -l "$out/omp-discord-$version.tgz" "$out/omp-discord-linux-x64-$version.tgz" >&2
