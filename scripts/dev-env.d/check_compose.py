"""Checks compose/docker-compose.yml: valid against the compose-spec JSON Schema (vendored in
check-jsonschema, no download), and mirroring the native environment: every ${VAR} it uses is
listed in .env.example, and every variable of .env.example is used by compose or by
scripts/dev-env. Exits non-zero with the problems listed."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
compose = ROOT / "compose" / "docker-compose.yml"
problems = []

result = subprocess.run(
    [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose)],
    capture_output=True, text=True)
if result.returncode != 0:
    problems.append("compose-spec validation failed:\n" + result.stdout + result.stderr)

example = (ROOT / ".env.example").read_text()
env_vars = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
compose_text = compose.read_text() + (ROOT / "compose" / "vault-seed.sh").read_text()
used_by_compose = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", compose_text))
native_text = "".join(p.read_text() for p in (ROOT / "scripts" / "dev-env.d").glob("*") if p.is_file())
native_text += (ROOT / "scripts" / "dev-env").read_text()

for var in sorted(v for v in used_by_compose if v not in env_vars and not v.startswith("SEED_") and v != "VAULT_ADDR"):
    problems.append(f"compose uses ${{{var}}} but .env.example does not list it")
for var in sorted(env_vars):
    if var not in compose_text and var not in native_text:
        problems.append(f".env.example lists {var} but neither compose nor scripts/dev-env uses it")
for var in sorted(env_vars):
    # Compose-only by design: the native MariaDB's root logs in over its socket.
    if var.startswith(("SEED_", "VAULT_PORT", "KAFKA_CONTROLLER")) or var == "MYSQL_ROOT_PASSWORD":
        continue
    if var not in native_text:
        problems.append(f"{var} is used by compose but not by the native environment")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"ok: {compose.relative_to(ROOT)} is valid compose-spec and mirrors the native environment ({len(env_vars)} variables)")
