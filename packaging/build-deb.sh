#!/usr/bin/env bash
# Build the cpagent Debian package (binary only) for amd64, arm64 or armhf, on any of them.
#
#   packaging/build-deb.sh            (what "make deb [ARCH=...]" runs)
#
# Assembles build/deb/<arch>/cpagent-<version>/ from the working tree (tracked and
# untracked files that .gitignore does not exclude) with packaging/debian/ as debian/, runs
# "dpkg-buildpackage -b -us -uc [-a ARCH]" there and lints the result. The package
# lands in build/deb/cpagent_<version>_<arch>.deb; its path is also written to
# build/deb/latest-<arch> and build/deb/latest.
#
# A cross build (ARCH other than the build machine's) needs root once, to add the
# architecture to dpkg and install the target's libc (for dpkg-shlibdeps) and binutils (for
# dh_strip). debian/build-venv fills the venv with PyPI's wheels for the target; for a
# requirement with no such wheel (armhf: cffi, python-pkcs11) the wheel is built in an
# emulated Debian 12 root of the target first (packaging/build-target-wheels; cached in
# build/wheels/<arch>/).
#
# Environment:
#   ARCH          the Debian architecture to build for (default: the build machine's).
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
build_arch="$(dpkg-architecture -qDEB_BUILD_ARCH)"
arch="${ARCH:-$build_arch}"
case "$arch" in
    amd64 | arm64 | armhf) ;;
    *) echo "build-deb: ARCH must be amd64, arm64 or armhf (not '$arch')" >&2; exit 1 ;;
esac
tree="$out/$arch/cpagent-$version"

# Requirements that PyPI has no wheel of for the architecture: built on the target, and the
# target's libraries they link besides libc (for dpkg-shlibdeps in a cross build).
case "$arch" in
    armhf) target_built="cffi python-pkcs11"; target_libs="libffi8" ;;
    *) target_built=""; target_libs="" ;;
esac

echo "build-deb: cpagent $version (pyproject: $upstream) for $arch in $tree"
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

cross=()
if [ "$arch" != "$build_arch" ]; then
    cross=(-a "$arch")
    gnu_type="$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)"
    # What a cross build needs besides the Build-Depends: the target's binutils (dh_strip)
    # and the target's libc, libgcc and target_libs, whose symbols files dpkg-shlibdeps
    # reads to compute the package's Depends from the wheels' extension modules.
    needed=("binutils-$gnu_type" "libc6:$arch" "libgcc-s1:$arch")
    for lib in $target_libs; do
        needed+=("$lib:$arch")
    done
    missing=()
    for pkg in "${needed[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || { echo "build-deb: a build for $arch needs (as root): dpkg --add-architecture $arch; apt-get install ${missing[*]}" >&2; exit 1; }
        if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
            echo "build-deb: adding the architecture $arch to dpkg"
            dpkg --add-architecture "$arch"
            apt-get update -q >/dev/null
        fi
        apt_install "${missing[@]}"
    fi
fi

if ! (cd "$tree" && dpkg-checkbuilddeps "${cross[@]}") 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "build-deb: installing the build dependencies (apt-get build-dep)"
        DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "${cross[@]}" "$tree" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "${cross[@]}" "$tree"; }
    else
        (cd "$tree" && dpkg-checkbuilddeps "${cross[@]}")   # prints what is missing, and fails
    fi
fi

target_wheels=""
if [ -n "$target_built" ]; then
    target_wheels="$top/build/wheels/$arch"
    # The requirement lines from pyproject.toml of those that are built on the target.
    reqs=()
    for name in $target_built; do
        req="$(awk -F'"' -v n="$name" 'tolower($2) ~ "^"n"([<>=!~ ;[]|$)" { print $2; exit }' pyproject.toml)"
        reqs+=("${req:-$name}")
    done
    bash packaging/build-target-wheels "$arch" "$target_wheels" "${reqs[@]}"
fi

rm -f "$out"/cpagent_"$version"_"$arch".* "$out/$arch"/cpagent_"$version"_"$arch".*
(cd "$tree" && TARGET_WHEELS="$target_wheels" dpkg-buildpackage -b -us -uc "${cross[@]}")
for f in "$out/$arch"/cpagent_"$version"_"$arch".*; do
    mv "$f" "$out/"
done
deb="$out/cpagent_${version}_${arch}.deb"
test -f "$deb"
printf '%s\n' "$deb" > "$out/latest-$arch"
printf '%s\n' "$deb" > "$out/latest"
build_s=$((SECONDS - started))

if [ "${DEB_NO_LINT:-}" != 1 ]; then
    command -v lintian >/dev/null || apt_install lintian
    echo "build-deb: lintian $deb"
    lintian --fail-on error --info "$deb" | tee "$out/lintian-${version}_$arch.txt"
fi

echo "build-deb: $deb"
echo "build-deb: $(du -k "$deb" | cut -f1) KiB, Installed-Size $(dpkg-deb -f "$deb" Installed-Size) KiB, built in ${build_s} s"
