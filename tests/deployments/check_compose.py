"""What deployments/compose.yaml must be: a valid Compose file (parsed by
the compose_spec validator after YAML merge keys are resolved, as Docker
Compose resolves them) that runs two nodes behind one proxy, as production
does.

Run by scripts/check-deployments; each failure names the rule it broke.
"""

import ipaddress
import json
import re
import sys
from pathlib import Path

import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = ROOT / "deployments"


def main() -> None:
    text = (DEPLOYMENTS / "compose.yaml").read_text()
    # Merge keys (`<<: *switchboard`) are YAML, not Compose: resolve them first.
    resolved = yaml.safe_load(text)
    try:
        compose = PyCompose.from_json(json.dumps(resolved)).to_dict()
    except ValueError as e:
        sys.exit(f"deployments/compose.yaml is not a valid Compose file: {e}")

    failures = []

    def check(ok: bool, rule: str) -> None:
        if not ok:
            failures.append(rule)

    services = compose["services"]
    nodes = {name: s for name, s in services.items() if "SWITCHBOARD_PUBLIC_URL" in s.get("environment", {})}
    check(len(nodes) >= 2, "at least two switchboard nodes")

    # References resolve: services, secrets, volumes.
    for name, service in services.items():
        for dependency in service.get("depends_on", {}) or {}:
            check(dependency in services, f"{name} depends on an unknown service {dependency}")
        for secret in service.get("secrets", []) or []:
            secret = secret if isinstance(secret, str) else secret["source"]
            check(secret in compose.get("secrets", {}), f"{name} uses an unknown secret {secret}")
        for volume in service.get("volumes", []) or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                check((DEPLOYMENTS / source).exists(), f"{name} mounts {source}, which is not in deployments/")
            else:
                check(source in compose.get("volumes", {}), f"{name} mounts an unknown volume {source}")

    # One public URL and one Redis for every node: a token from one is
    # accepted by the other.
    for setting in ("SWITCHBOARD_PUBLIC_URL", "REDIS_URL", "SWITCHBOARD_REDIS_PREFIX", "SWITCHBOARD_MASTER_KEY_FILE"):
        values = {node["environment"].get(setting) for node in nodes.values()}
        check(len(values) == 1 and None not in values, f"every node has the same {setting}")

    # Secrets as files, never as values in the environment.
    for name, node in nodes.items():
        environment = node["environment"]
        for secret in ("SWITCHBOARD_MASTER_KEY", "SWITCHBOARD_BOOTSTRAP_TOKEN"):
            check(secret not in environment, f"{name} gets {secret} as a file, not a value")
            check(f"{secret}_FILE" in environment, f"{name} reads {secret}_FILE")
        check("ports" not in node, f"{name} publishes no port: the proxy is the way in")

    # Only on loopback, and only the proxy.
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    check(list(published) == ["proxy"], f"only the proxy publishes ports, not {sorted(published)}")
    for port in published.get("proxy", []):
        host = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
        check(host == "127.0.0.1", f"the proxy publishes {port} on loopback only")

    # The proxy reaches every node on the port the image listens on.
    caddyfile = next(
        DEPLOYMENTS / v.split(":", 1)[0]
        for v in services["proxy"]["volumes"]
        if "Caddyfile" in v
    ).read_text()
    listen = re.search(r"SWITCHBOARD_LISTEN=\S+:(\d+)", (DEPLOYMENTS / "Dockerfile").read_text())
    check(listen is not None, "the Dockerfile sets SWITCHBOARD_LISTEN")
    for name in nodes:
        check(listen is not None and f"{name}:{listen.group(1)}" in caddyfile, f"the proxy forwards to {name}")

    # The nodes believe the proxy's X-Forwarded-For, and only from the
    # project's own network.
    subnets = [
        ipaddress.ip_network(c["subnet"])
        for c in compose.get("networks", {}).get("default", {}).get("ipam", {}).get("config", [])
    ]
    check(len(subnets) == 1, "the default network has one fixed subnet")
    for name, node in nodes.items():
        trusted = node["environment"].get("SWITCHBOARD_TRUSTED_PROXIES", "")
        blocks = [ipaddress.ip_network(b.strip()) for b in trusted.split(",") if b.strip()]
        check(
            bool(blocks) and all(any(b.subnet_of(s) for s in subnets) for b in blocks),
            f"{name} trusts forwarding headers from the compose network only ({trusted!r})",
        )

    if failures:
        sys.exit("deployments/compose.yaml:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
