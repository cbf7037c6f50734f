#!/usr/bin/env bash
# Writes to stdout the third-party notices of a Petrel release: the
# licence of every Go module linked into cmd/petrel (read from the module
# cache, in module order) and of the ONNX Runtime library shipped beside
# it. scripts/release.sh puts the result in the tarball as
# THIRD_PARTY_NOTICES.txt; MIT, BSD and Apache licences require the
# notices to travel with binary copies.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "Third-party software in this Petrel release"
echo "==========================================="
echo
echo "bin/petrel statically links the Go modules below; lib/libonnxruntime.so.1"
echo "is ONNX Runtime. Each is followed by its licence as it ships it."

# ONNX Runtime's licence is the MIT licence with Microsoft's notice; the
# npm package it comes from carries no copy, so it is written out here.
cat <<'MIT'

------------------------------------------------------------------------
ONNX Runtime (lib/libonnxruntime.so.1), https://github.com/microsoft/onnxruntime
------------------------------------------------------------------------
MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
MIT

tpl='{{with .Module}}{{if not .Main}}{{.Path}}|{{.Version}}|{{if .Replace}}{{.Replace.Dir}}{{else}}{{.Dir}}{{end}}{{end}}{{end}}'
mods=$(go list -deps -f "$tpl" ./cmd/petrel | LC_ALL=C sort -u)
[ -n "$mods" ] || { echo "notices: go list found no modules" >&2; exit 1; }
while IFS='|' read -r path version dir; do
  [ -n "$path" ] || continue
  files=()
  while IFS= read -r f; do files+=("$f"); done < <(
    find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' -o -iname 'notice*' \) | LC_ALL=C sort)
  if [ ${#files[@]} -eq 0 ]; then
    echo "notices: $path $version ships no licence file in $dir" >&2
    exit 1
  fi
  printf '\n%s\n' '------------------------------------------------------------------------'
  printf '%s %s\n' "$path" "$version"
  printf '%s\n' '------------------------------------------------------------------------'
  for f in "${files[@]}"; do
    cat "$f"
    # A file without a final newline must not run into the next header.
    [ -z "$(tail -c 1 "$f")" ] || echo
  done
done <<< "$mods"
