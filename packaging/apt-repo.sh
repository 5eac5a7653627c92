#!/usr/bin/env bash
# Lay out a signed apt repository of the cpagent packages (what "make apt-repo" runs).
#
#   packaging/apt-repo.sh                 the newest build/deb/cpagent_*_<arch>.deb per arch
#   packaging/apt-repo.sh FILE.deb ...    the newest of the given packages per arch
#
# The repository (reprepro: pool/ and dists/<codename>/ with InRelease, Release and
# Release.gpg) is written to build/apt-repo/. Everything in it is meant to be published as
# it is: copy the whole directory to the web server. reprepro's own bookkeeping (conf/,
# db/) lives beside it in build/apt-repo-state/ and must be kept for the next run.
#
# Every architecture of APT_REPO_ARCHS needs a package: a missing one is an error, so that a
# release never silently leaves a kind of board behind. Rerunning with newer packages
# replaces the older version of the same architecture (reprepro keeps one version of a
# package per architecture; the old file leaves pool/). A package older than the one already
# published is not added (the repository keeps the newer one), and a different file with the
# version already published is refused: apt would see a checksum mismatch.
#
# Signing: APT_REPO_KEY names a secret key in the caller's GNUPGHOME (a manufacturer's
# release key). Without it, a development/test key is made once in build/apt-repo-key/ (a
# GnuPG home of its own, mode 0700, no passphrase): good for testing, not for shipping. The
# public key is exported into the repository as cpagent-archive-keyring.gpg (binary, for
# /usr/share/keyrings) and cpagent-archive-keyring.asc. The user's default keyring is only
# read, and only when APT_REPO_KEY is set.
#
# Environment:
#   APT_REPO_OUT      the repository (default: build/apt-repo)
#   APT_REPO_STATE    reprepro's conf/ and db/ (default: <APT_REPO_OUT>-state)
#   APT_REPO_ARCHS    the architectures (default: "amd64 arm64 armhf")
#   APT_REPO_CODENAME the suite (default: bookworm)
#   APT_REPO_KEY      the signing key (a fingerprint, key id or user id in GNUPGHOME)
#   APT_REPO_KEY_DIR  where the development key is made (default: build/apt-repo-key)
#   APT_REPO_URL      where the repository will be served, for the sources entry printed at
#                     the end (also written to <APT_REPO_OUT>/cpagent.sources when set)
#   APT_REPO_ORIGIN   the Release file's Origin and Label (default: cpagent)
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
me="apt-repo"
die() { echo "$me: $*" >&2; exit 1; }

abspath() { mkdir -p "$1" && (cd "$1" && pwd); }
out="$(abspath "${APT_REPO_OUT:-$top/build/apt-repo}")"
state="$(abspath "${APT_REPO_STATE:-$out-state}")"
read -r -a archs <<< "${APT_REPO_ARCHS:-amd64 arm64 armhf}"
[ "${#archs[@]}" -gt 0 ] || die "APT_REPO_ARCHS is empty"
codename="${APT_REPO_CODENAME:-bookworm}"
component=main
origin="${APT_REPO_ORIGIN:-cpagent}"
keyring_name=cpagent-archive-keyring
dev_uid="cpagent repository (development/test key, not for production)"
for tool in reprepro gpg dpkg-deb; do
    command -v "$tool" >/dev/null \
        || die "needs $tool (apt-get install reprepro gnupg dpkg-dev)"
done
case "$state/" in "$out"/*) die "APT_REPO_STATE ($state) must not be inside the repository ($out)";; esac

# --- the packages: the newest one of each package and architecture -------------------------
if [ "$#" -gt 0 ]; then
    candidates=("$@")
else
    shopt -s nullglob
    candidates=("$top"/build/deb/cpagent_*.deb)
    shopt -u nullglob
    [ "${#candidates[@]}" -gt 0 ] \
        || die "no package in build/deb/: build them first (make deb ARCH=<arch>)"
fi
declare -A newest=() newest_version=() have_arch=()
for deb in "${candidates[@]}"; do
    [ -f "$deb" ] || die "$deb: no such file"
    fields="$(dpkg-deb -f "$deb" Package Version Architecture 2>/dev/null)" \
        || die "$deb: not a Debian package"
    pkg="$(sed -n 's/^Package: //p' <<< "$fields")"
    version="$(sed -n 's/^Version: //p' <<< "$fields")"
    arch="$(sed -n 's/^Architecture: //p' <<< "$fields")"
    if [ "$arch" != all ] && ! printf '%s\n' "${archs[@]}" | grep -qxF "$arch"; then
        echo "$me: skipping $deb: $arch is not one of APT_REPO_ARCHS (${archs[*]})"
        continue
    fi
    key="$pkg $arch"
    if [ -z "${newest[$key]:-}" ] \
        || dpkg --compare-versions "$version" gt "${newest_version[$key]}"; then
        newest[$key]="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
        newest_version[$key]="$version"
    fi
    if [ "$arch" = all ]; then
        for a in "${archs[@]}"; do have_arch[$a]=1; done
    else
        have_arch[$arch]=1
    fi
done
missing=() present=()
for a in "${archs[@]}"; do
    if [ -n "${have_arch[$a]:-}" ]; then present+=("$a"); else missing+=("$a"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    where="${*:+the packages given}"
    hint="build it (make deb ARCH=${missing[0]})"
    [ "${#present[@]}" -eq 0 ] || hint="$hint, or narrow the list: APT_REPO_ARCHS=\"${present[*]}\""
    die "no package for ${missing[*]} in ${where:-build/deb/} (the repository holds ${archs[*]}): $hint"
fi

# --- the signing key ------------------------------------------------------------------------
if [ -n "${APT_REPO_KEY:-}" ]; then
    gnupghome="${GNUPGHOME:-$HOME/.gnupg}"
    key_note="release key $APT_REPO_KEY from $gnupghome"
    own_agent=""
else
    gnupghome="${APT_REPO_KEY_DIR:-$top/build/apt-repo-key}"
    mkdir -p "$gnupghome"
    gnupghome="$(cd "$gnupghome" && pwd)"
    chmod 0700 "$gnupghome"
    key_note="DEVELOPMENT/TEST key from $gnupghome (set APT_REPO_KEY to sign with your release key)"
    own_agent="$gnupghome"
fi
export GNUPGHOME="$gnupghome"
# The development key's GnuPG home gets its own gpg-agent (started by gpg and by reprepro's
# gpgme): stop it on the way out, whatever happens. A caller's agent is left alone.
cleanup() { [ -z "$own_agent" ] || gpgconf --homedir "$own_agent" --kill gpg-agent 2>/dev/null || true; }
trap cleanup EXIT

gpg_batch() { gpg --batch --no-tty --quiet "$@"; }
secret_fprs() {   # the fingerprints of the secret primary keys matching $1
    gpg_batch --with-colons --list-secret-keys -- "$1" 2>/dev/null \
        | awk -F: '$1 == "sec" { want = 1; next } want && $1 == "fpr" { print $10; want = 0 }'
}
if [ -z "${APT_REPO_KEY:-}" ] && [ -z "$(secret_fprs "$dev_uid")" ]; then
    echo "$me: making the development/test signing key in $gnupghome (no passphrase)"
    cat > "$gnupghome/README" <<EOF
A DEVELOPMENT/TEST signing key for the cpagent apt repository, made by packaging/apt-repo.sh.
It has no passphrase and anyone with this directory can sign packages that apt will trust:
use it for testing only. Sign published repositories with your own release key
(APT_REPO_KEY=<fingerprint> make apt-repo; see docs/apt-repository.md).
EOF
    gpg_batch --pinentry-mode loopback --passphrase '' \
        --quick-generate-key "$dev_uid" \
        rsa4096 sign never
fi
if [ -n "${APT_REPO_KEY:-}" ]; then
    mapfile -t fprs < <(secret_fprs "$APT_REPO_KEY")
else
    mapfile -t fprs < <(secret_fprs "$dev_uid")
fi
[ "${#fprs[@]}" -gt 0 ] || die "no secret key \"${APT_REPO_KEY:-}\" in $gnupghome (gpg --list-secret-keys)"
[ "${#fprs[@]}" -eq 1 ] \
    || die "\"${APT_REPO_KEY:-$dev_uid}\" matches ${#fprs[@]} secret keys in $gnupghome: give its fingerprint"
fpr="${fprs[0]}"

# --- the repository -------------------------------------------------------------------------
# reprepro's db and the published tree belong together: if one of them is gone (deleted,
# or a new APT_REPO_OUT), start both afresh from the packages given.
if [ ! -f "$out/dists/$codename/Release" ] || [ ! -d "$state/db" ] \
    || [ "$(cat "$state/outdir" 2>/dev/null)" != "$out" ]; then
    if [ -e "$out/dists" ] || [ -e "$out/pool" ] || [ -e "$state/db" ]; then
        echo "$me: $out and $state do not match: making the repository afresh"
    fi
    rm -rf "$state/db" "$out/dists" "$out/pool"
fi
mkdir -p "$state/conf"
printf '%s\n' "$out" > "$state/outdir"
write_conf() {
    cat > "$state/conf/distributions" <<EOF
Origin: $origin
Label: $origin
Codename: $codename
Architectures: ${archs[*]}
Components: $component
Description: cpagent, the OCPP charge point agent
SignWith: $fpr
EOF
}
repo() { reprepro --silent --basedir "$state" --outdir "$out" "$@"; }
# First decide (with the last run's configuration), then change: a refused package leaves
# the repository as it was.
[ -f "$state/conf/distributions" ] || write_conf
known_archs=" $(sed -n 's/^Architectures: //p' "$state/conf/distributions") "
[ "$(sed -n 's/^Codename: //p' "$state/conf/distributions")" = "$codename" ] || known_archs=""
includes=()
for key in $(printf '%s\n' "${!newest[@]}" | sort | tr ' ' '/'); do
    pkg="${key%/*}" arch="${key#*/}"
    deb="${newest[$pkg $arch]}" version="${newest_version[$pkg $arch]}"
    [ "$arch" = all ] && list_arch="${archs[0]}" || list_arch="$arch"
    have_version="" have_file=""
    if [[ "$known_archs" == *" $list_arch "* ]]; then
        read -r have_version have_file < <(repo -A "$list_arch" \
            --list-format '${version} ${$filekey}\n' list "$codename" "$pkg") || true
    fi
    if [ -z "$have_version" ]; then
        echo "$me: adding $pkg $version ($arch)"
    elif [ "$have_version" = "$version" ]; then
        cmp -s "$deb" "$out/$have_file" \
            || die "$pkg $version ($arch) is already published with different content ($out/$have_file): apt clients would see a checksum mismatch. Give the new build a new version (DEB_VERSION=... make deb)"
        echo "$me: $pkg $version ($arch) is already in the repository"
        continue
    elif dpkg --compare-versions "$have_version" gt "$version"; then
        echo "$me: keeping $pkg $have_version ($arch): $(basename "$deb") is older"
        continue
    else
        echo "$me: replacing $pkg $have_version with $version ($arch)"
    fi
    includes+=("$deb")
done

write_conf
# Architectures dropped from APT_REPO_ARCHS since the last run leave the repository.
repo --delete clearvanished >/dev/null
for dir in "$out/dists/$codename/$component"/binary-*; do
    [ -d "$dir" ] || continue
    printf '%s\n' "${archs[@]}" | grep -qxF "${dir##*/binary-}" || rm -rf "$dir"
done
for deb in "${includes[@]}"; do
    # reprepro needs a section and a priority: the package's own, else Debian's defaults.
    section="$(dpkg-deb -f "$deb" Section)" priority="$(dpkg-deb -f "$deb" Priority)"
    msg="$(repo --section "${section:-misc}" --priority "${priority:-optional}" \
        includedeb "$codename" "$deb" 2>&1)" \
        || { printf '%s\n' "$msg" >&2; die "reprepro could not add $deb"; }
    # Not for us: architecture "all" packages are added to every architecture above.
    printf '%s\n' "$msg" | grep -v -e '^New architecture' -e '^reprepro flood' \
        -e "^to populate it with architecture 'all'" -e '^$' >&2 || true
done
repo export "$codename"
for f in InRelease Release Release.gpg; do
    [ -s "$out/dists/$codename/$f" ] || die "reprepro wrote no dists/$codename/$f"
done

gpg_batch --export-options export-minimal --export "$fpr" > "$out/$keyring_name.gpg"
gpg_batch --export-options export-minimal --armor --export "$fpr" > "$out/$keyring_name.asc"
gpgv --keyring "$out/$keyring_name.gpg" "$out/dists/$codename/InRelease" 2>/dev/null \
    || die "dists/$codename/InRelease does not verify with $keyring_name.gpg"

url="${APT_REPO_URL:-}"
sources="Types: deb
URIs: ${url:-https://<your server>/<path of this directory>}
Suites: $codename
Components: $component
Signed-By: /usr/share/keyrings/$keyring_name.gpg"
if [ -n "$url" ]; then
    printf '%s\n' "$sources" > "$out/cpagent.sources"
else
    rm -f "$out/cpagent.sources"
fi

echo
echo "$me: the repository $out ($codename/$component):"
repo list "$codename" | sed 's/^/  /'
echo "$me: signed with the $key_note"
echo "$me: key fingerprint $fpr"
echo "$me: publish the whole directory $out/ (keep $state/ for the next run)"
echo "$me: on the charger, install $keyring_name.gpg as /usr/share/keyrings/$keyring_name.gpg"
echo "$me: and this sources entry as /etc/apt/sources.list.d/cpagent.sources:"
echo
printf '%s\n' "$sources"
