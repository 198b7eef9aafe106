#!/usr/bin/env bash
# Make the published asv dashboard (../.asv/html) work without internet: asv's index.html loads
# jQuery, flot, bootstrap and friends from CDNs. This fetches the same libraries from the npm
# registry (npm pack) into html/vendor and points index.html at them. Run after `asv publish`.
set -euo pipefail
html=${1:-"$(dirname "$0")/../../.asv/html"}
tmp=$(mktemp -d)
(cd "$tmp" && for p in jquery@3.3.1 flot@0.8.3 flot-orderbars@1.0.0 stupid-table-plugin@1.1.3 blueimp-md5@2.19.0 \
    bootstrap@3.1.1; do npm pack -q "$p" >/dev/null; done && for f in *.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done)
v="$html/vendor"
mkdir -p "$v"
cp "$tmp"/jquery-3.3.1/package/dist/jquery.min.js "$v/"
for f in jquery.flot jquery.flot.time jquery.flot.selection jquery.flot.categories; do
    cp "$tmp/flot-0.8.3/package/$f.js" "$v/"
done
cp "$tmp"/flot-orderbars-1.0.0/package/js/jquery.flot.orderBars.js "$v/"
cp "$tmp"/stupid-table-plugin-1.1.3/package/stupidtable.min.js "$v/"
cp "$tmp"/blueimp-md5-2.19.0/package/js/md5.min.js "$v/"
cp "$tmp"/bootstrap-3.1.1/package/dist/js/bootstrap.min.js "$tmp"/bootstrap-3.1.1/package/dist/css/bootstrap.min.css "$v/"
sed -i -E \
    -e 's#https://code.jquery.com/jquery-3.3.1.min.js#vendor/jquery.min.js#' \
    -e 's#https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/(jquery.flot[a-z.]*)\.min\.js#vendor/\1.js#' \
    -e 's#https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js#vendor/jquery.flot.orderBars.js#' \
    -e 's#https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js#vendor/stupidtable.min.js#' \
    -e 's#https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js#vendor/md5.min.js#' \
    -e 's#https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js#vendor/bootstrap.min.js#' \
    -e 's#https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css#vendor/bootstrap.min.css#' \
    -e 's/ integrity="[^"]*"//g' \
    "$html/index.html"
rm -rf "$tmp"
grep -c 'src="vendor/' "$html/index.html"
