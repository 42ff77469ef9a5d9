#!/usr/bin/env bash
# Materialize build/qemu: the base as one commit tagged "base", then one
# commit per patch of patches/ (git am, in file-name order).
#
# An existing tree is kept when it already holds the series, or holds work
# of its own on top of the series it was made from.  It is rebuilt from
# base when patches/ changed (a pull, say) and the tree holds no work of
# its own.  When both changed, it stops and says so.
set -euo pipefail
. "$(dirname "$0")/common.sh"

patches_stamp() {
    cat "$PATCHES"/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1
}

apply_series() {
    local p n=0
    shopt -s nullglob
    for p in "$PATCHES"/*.patch; do
        if ! out=$(git -C "$TREE" am -q --committer-date-is-author-date "$p" 2>&1); then
            git -C "$TREE" am --abort >/dev/null 2>&1 || true
            echo "$out" >&2
            die "patch $(basename "$p") does not apply (see above); build/qemu stops before it"
        fi
        n=$((n + 1))
    done
    patches_stamp > "$TREE/.git/series-stamp"
    note "build/qemu: base + $n patches"
}

create_tree() {
    local base
    base=$("$TOP/scripts/get-base.sh")
    note "materializing build/qemu from $(cat "$CACHE/last-base")"
    rm -rf "$TREE"
    mkdir -p "$TREE"
    (cd "$base" && tar --exclude=./.unpacked -cf - .) | tar -xf - -C "$TREE"
    git -C "$TREE" init -q -b master
    git -C "$TREE" config user.name "${GIT_AUTHOR_NAME:-QEMU series developer}"
    git -C "$TREE" config user.email "${GIT_AUTHOR_EMAIL:-dev@qemu-vfio-series.invalid}"
    git -C "$TREE" config core.abbrev 12
    # The base tree's own .gitignore must not hide any of its files.
    git -C "$TREE" add -A -f .
    GIT_AUTHOR_NAME=$BASE_IDENT_NAME GIT_AUTHOR_EMAIL=$BASE_IDENT_EMAIL \
    GIT_COMMITTER_NAME=$BASE_IDENT_NAME GIT_COMMITTER_EMAIL=$BASE_IDENT_EMAIL \
    GIT_AUTHOR_DATE=$BASE_DATE GIT_COMMITTER_DATE=$BASE_DATE \
        git -C "$TREE" commit -q -m "$(cat "$CACHE/last-base")"
    git -C "$TREE" tag base
    cp "$CACHE/last-base" "$TREE/.git/base-origin"
    apply_series
}

if [ ! -d "$TREE/.git" ] || ! git -C "$TREE" rev-parse -q --verify base >/dev/null; then
    create_tree
    exit 0
fi

[ -d "$TREE/.git/rebase-apply" ] || [ -d "$TREE/.git/rebase-merge" ] &&
    die "build/qemu is in the middle of a rebase or am; finish it first"

old=$(cat "$TREE/.git/series-stamp" 2>/dev/null || echo none)
new=$(patches_stamp)
if [ "$old" = "$new" ]; then
    exit 0              # patches/ unchanged since this tree was made or exported
fi

# patches/ changed behind the tree.  Does the tree hold work of its own?
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$TOP/scripts/export.sh" --to "$tmp" >/dev/null
mine=$(cat "$tmp"/*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$mine" = "$new" ]; then
    patches_stamp > "$TREE/.git/series-stamp"
    exit 0
fi
if [ "$mine" != "$old" ] || [ -n "$(git -C "$TREE" status --porcelain)" ]; then
    die "patches/ changed, and build/qemu also holds work that patches/ lacks.
Export it ('make export') and merge by hand, or move build/qemu aside."
fi
note "patches/ changed: re-applying the series on base"
git -C "$TREE" checkout -q -B master base
apply_series
