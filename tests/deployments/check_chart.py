"""What each rendered form of the Helm chart must contain.

Run by scripts/check-deployments with the folder of rendered manifests; each
check names the form and the rule it broke.
"""

import sys
from pathlib import Path

import yaml


def objects(folder: Path, form: str) -> dict:
    docs = yaml.safe_load_all((folder / f"{form}.yaml").read_text())
    return {doc["kind"]: doc for doc in docs if doc}


def env(deployment: dict) -> dict:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container["env"]}


def main(folder: Path) -> None:
    failures = []

    def check(form: str, ok: bool, rule: str) -> None:
        if not ok:
            failures.append(f"{form}: {rule}")

    for form in ("single", "sentinel", "cluster", "embedded"):
        kinds = objects(folder, form)
        deployment = kinds["Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        variables = env(deployment)
        check(form, container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz")
        check(form, container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz")
        check(form, "secretKeyRef" in variables["SWITCHBOARD_MASTER_KEY"].get("valueFrom", {}), "master key from a Secret")
        check(form, "value" not in variables["SWITCHBOARD_MASTER_KEY"], "master key never inline")
        check(form, pod["securityContext"]["runAsNonRoot"] is True, "runs as non-root")
        check(form, "Service" in kinds, "has a Service")
        embedded = form == "embedded"
        # ci/cluster.yaml turns the autoscaler off and fixes the replicas.
        check(form, ("HorizontalPodAutoscaler" in kinds) == (form in ("single", "sentinel")), "autoscaler as configured")
        check(form, ("PodDisruptionBudget" in kinds) != embedded, "disruption budget only when nodes scale out")
        if embedded:
            check(form, deployment["spec"]["replicas"] == 1, "embedded engine runs exactly one node")
            check(form, deployment["spec"]["strategy"]["type"] == "Recreate", "embedded engine never runs two nodes during a rollout")
            check(form, "PersistentVolumeClaim" in kinds, "embedded engine keeps its data on a volume")
            check(form, not any(name.startswith("REDIS") or "REDIS_" in name for name in variables if name != "SWITCHBOARD_REDIS_PREFIX"), "no Redis settings")

    single = env(objects(folder, "single")["Deployment"])
    check("single", "REDIS_URL" in single, "REDIS_URL set")
    forms = {"single": "REDIS_URL", "sentinel": "SWITCHBOARD_REDIS_SENTINELS", "cluster": "SWITCHBOARD_REDIS_CLUSTER_NODES"}
    for form, setting in forms.items():
        variables = env(objects(folder, form)["Deployment"])
        others = [name for name in forms.values() if name != setting and name in variables]
        check(form, setting in variables and not others, f"{setting} set and no other Redis form")
    sentinel = env(objects(folder, "sentinel")["Deployment"])
    check("sentinel", sentinel["SWITCHBOARD_REDIS_SENTINEL_MASTER"]["value"] == "mymaster", "the master's name set")
    check("sentinel", sentinel["SWITCHBOARD_REDIS_WAIT_REPLICAS"]["value"] == "1", "waits for a replica")
    check("sentinel", "secretKeyRef" in sentinel["SWITCHBOARD_REDIS_PASSWORD"]["valueFrom"], "Redis password from the Secret")
    cluster_deployment = objects(folder, "cluster")["Deployment"]
    cluster = env(cluster_deployment)
    check("cluster", cluster["SWITCHBOARD_REDIS_USERNAME"]["value"] == "switchboard", "ACL user set")
    ca = cluster.get("SWITCHBOARD_REDIS_TLS_CA_FILE", {}).get("value", "")
    mounts = cluster_deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    check("cluster", any(ca.startswith(m["mountPath"] + "/") for m in mounts), "the Redis CA file is mounted")
    ingress = objects(folder, "single")["Ingress"]
    check("single", ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600", "WebSocket read timeout on the Ingress")
    check("single", ingress["spec"]["tls"][0]["secretName"] == "chat-tls", "Ingress TLS")
    if failures:
        print("\n".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
