# Tools the tests use besides the services: the Mermaid parser (npm `mermaid` with `jsdom` for
# its DOM) that checks `pipectl plan --format mermaid`, in a node_modules under the cache.

MERMAID_VERSION=11.17.2
JSDOM_VERSION=25.0.1

test_tools_install() {
  local dir="$CACHE/node-tools"
  command -v npm >/dev/null 2>&1 || { say "test tools: npm not found; the Mermaid check will be skipped (install nodejs and npm)"; return 0; }
  if [ ! -f "$dir/node_modules/mermaid/package.json" ] \
    || ! grep -q "\"version\": \"$MERMAID_VERSION\"" "$dir/node_modules/mermaid/package.json"; then
    say "test tools: installing mermaid $MERMAID_VERSION and jsdom $JSDOM_VERSION (npm) into $dir"
    mkdir -p "$dir"
    npm install --prefix "$dir" --silent --no-audit --no-fund \
      "mermaid@$MERMAID_VERSION" "jsdom@$JSDOM_VERSION" >"$STATE/logs/test-tools-install.log" 2>&1 \
      || die "test tools: npm install failed; see $STATE/logs/test-tools-install.log"
  fi
}
