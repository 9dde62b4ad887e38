# Shared Cargo settings for scripts: a build cache outside the clone (reused across clones and
# CI runs on the same machine) and the mold linker when it is installed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pipectl/target}"
if [ -z "${RUSTFLAGS+x}" ] && command -v mold >/dev/null 2>&1; then
  export RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
