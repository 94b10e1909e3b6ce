#!/bin/sh
# Fetch Debian's postfix package and unpack it (never install it) into DIR,
# so that DIR/usr/sbin/smtp-source can serve as the reference binary for
# tests/differential.rs.  Run it as:
#
#     sh tests/fetch-reference.sh target/reference
#
# Idempotent: does nothing when DIR/usr/sbin/smtp-source already exists.
# Run the result with LD_LIBRARY_PATH=DIR/usr/lib/postfix.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1

if [ -x "$dir/usr/sbin/smtp-source" ]; then
    exit 0
fi

for tool in apt-get dpkg; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: $tool not found; cannot fetch the reference" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/smtp-source-ref.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
# Let apt's unprivileged _apt user write the download here.
chmod 755 "$tmp"

if ! (cd "$tmp" && apt-get download postfix); then
    echo "$0: download failed; running apt-get update and retrying" >&2
    apt-get update
    (cd "$tmp" && apt-get download postfix)
fi

deb=$(ls "$tmp"/postfix_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
    echo "$0: no postfix .deb was downloaded" >&2
    exit 1
fi

# Unpack into a sibling directory first, then move it into place, so an
# interrupted run never leaves a half-unpacked DIR that looks complete.
mkdir -p "$(dirname "$dir")"
stage="$dir.partial.$$"
rm -rf "$stage"
mkdir -p "$stage"
dpkg -x "$deb" "$stage"
if [ ! -x "$stage/usr/sbin/smtp-source" ]; then
    rm -rf "$stage"
    echo "$0: $deb has no usr/sbin/smtp-source" >&2
    exit 1
fi
if [ -e "$dir" ]; then
    # DIR exists but has no smtp-source: unpack into it in place.
    cp -a "$stage/." "$dir/"
    rm -rf "$stage"
else
    mv "$stage" "$dir"
fi
echo "reference unpacked: $dir/usr/sbin/smtp-source ($(basename "$deb"))"
