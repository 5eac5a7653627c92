#!/usr/bin/env bash
# Build the cpagent Debian package (binary only) for this machine's architecture.
#
#   packaging/build-deb.sh            (what "make deb" runs)
#
# Assembles build/deb/cpagent-<version>/ from the working tree (tracked and untracked files
# that .gitignore does not exclude) with packaging/debian/ as debian/, runs
# "dpkg-buildpackage -b -us -uc" there and lints the result. The package lands in
# build/deb/cpagent_<version>_<arch>.deb; its path is also written to build/deb/latest.
#
# Environment:
#   DEB_VERSION   the package version (default: [project] version in pyproject.toml). A
#                 version other than debian/changelog's newest gets an automatic entry.
#   DEB_NO_LINT=1 skip lintian.
#   DEB_OUT       where the build tree and the results go (default: build/deb).
# Needs network access to PyPI (the venv is filled by pip) and, when build dependencies
# are missing and this runs as root, to Debian's mirror (apt-get build-dep).
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
out="${DEB_OUT:-$top/build/deb}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
started=$SECONDS

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
}
if ! command -v dpkg-buildpackage >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "build-deb: needs dpkg-dev (apt-get install dpkg-dev)" >&2; exit 1; }
    apt_install dpkg-dev
fi

# [project] version in pyproject.toml (awk: no Python needed before the build dependencies).
upstream="$(awk -F'"' '/^\[/ { p = ($0 == "[project]") } p && /^version *=/ { print $2; exit }' pyproject.toml)"
[ -n "$upstream" ] || { echo "build-deb: no [project] version in pyproject.toml" >&2; exit 1; }
version="${DEB_VERSION:-$upstream}"
tree="$out/cpagent-$version"

echo "build-deb: cpagent $version (pyproject: $upstream) in $tree"
rm -rf "$tree"
mkdir -p "$tree"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$top" ls-files -z --cached --others --exclude-standard \
        | grep -z -v -E '^(packaging/debian/|\.venv/|build/|dist/)' \
        | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
        | tar -C "$top" --null -T - -cf - | tar -C "$tree" -xf -
else
    tar -C "$top" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude=./packaging/debian --exclude='__pycache__' --exclude='*.egg-info' \
        -cf - . | tar -C "$tree" -xf -
fi
cp -a packaging/debian "$tree/debian"

# A version other than the changelog's newest (DEB_VERSION, or pyproject.toml bumped
# without a changelog entry) gets an automatic entry on top.
top_version="$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)"
if [ "$version" != "$top_version" ]; then
    maint="$(sed -n 's/^Maintainer: //p' "$tree/debian/control")"
    { printf 'cpagent (%s) bookworm; urgency=medium\n\n' "$version"
      printf '  * Automatic build of cpagent %s (pyproject.toml version %s).\n\n' "$version" "$upstream"
      printf ' -- %s  %s\n\n' "$maint" "$(date -R)"
      cat packaging/debian/changelog; } > "$tree/debian/changelog"
fi

if ! (cd "$tree" && dpkg-checkbuilddeps) 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "build-deb: installing the build dependencies (apt-get build-dep)"
        DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "$tree" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "$tree"; }
    else
        (cd "$tree" && dpkg-checkbuilddeps)   # prints what is missing, and fails
    fi
fi

rm -f "$out"/cpagent_"$version"_*.deb "$out"/cpagent_"$version"_*.buildinfo "$out"/cpagent_"$version"_*.changes
(cd "$tree" && dpkg-buildpackage -b -us -uc)
arch="$(dpkg-architecture -qDEB_HOST_ARCH)"
deb="$out/cpagent_${version}_${arch}.deb"
test -f "$deb"
printf '%s\n' "$deb" > "$out/latest"
build_s=$((SECONDS - started))

if [ "${DEB_NO_LINT:-}" != 1 ]; then
    command -v lintian >/dev/null || apt_install lintian
    echo "build-deb: lintian $deb"
    lintian --fail-on error --info "$deb" | tee "$out/lintian-$version.txt"
fi

echo "build-deb: $deb"
echo "build-deb: $(du -k "$deb" | cut -f1) KiB, Installed-Size $(dpkg-deb -f "$deb" Installed-Size) KiB, built in ${build_s} s"
