"""Helpers of check.sh (run through it, not by hand).

    check.py split RENDERED OUTDIR     core objects to OUTDIR/core.yaml, KEDA objects
                                       one per file, OUTDIR/keda.list = "schema<TAB>file"
    check.py rules RENDERED            rules that no schema sees (cross-object, policy)
    check.py negatives RENDERED OUTDIR broken copies that must fail, one line each:
                                       "stage<TAB>schema<TAB>file<TAB>what is wrong"
    check.py dashboard FILE            the Grafana dashboard is sound JSON
    check.py otel OTEL CRUST           deploy/otel (rendered) is a sound collector that
                                       Crust's OTEL_EXPORTER_OTLP_ENDPOINT reaches
    check.py otel-negatives OTEL OUTDIR broken copies of deploy/otel, one path a line
"""

import copy
import json
import os
import re
import sys
from urllib.parse import urlparse

import yaml

# Non-core kinds we have schemas for (deploy/k8s/schemas/).
KEDA_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
}
POD_OWNERS = ("Deployment", "Job")
RUN_AS_USER = 10001


def load(path):
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def ident(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def is_core(api_version):
    """Built-in API groups, which kubernetes-validate has schemas for."""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def split(rendered, outdir):
    docs = load(rendered)
    core, keda_lines, unknown = [], [], []
    for index, doc in enumerate(docs):
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if key in KEDA_SCHEMAS:
            path = os.path.join(outdir, f"{index:02d}-{doc['kind']}-{doc['metadata']['name']}.yaml")
            with open(path, "w") as handle:
                yaml.safe_dump(doc, handle, sort_keys=False)
            keda_lines.append(f"{KEDA_SCHEMAS[key]}\t{path}")
        elif is_core(key[0]):
            core.append(doc)
        else:
            unknown.append(f"{ident(doc)} ({key[0]})")
    with open(os.path.join(outdir, "core.yaml"), "w") as handle:
        yaml.safe_dump_all(core, handle, sort_keys=False)
    with open(os.path.join(outdir, "keda.list"), "w") as handle:
        handle.write("".join(line + "\n" for line in keda_lines))
    print(f"   {len(docs)} objects: {', '.join(ident(doc) for doc in docs)}")
    if unknown:
        print(f"FAIL no schema for: {', '.join(unknown)} (add one to deploy/k8s/schemas/)")
        return 1
    return 0


def pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def template_labels(doc):
    return doc["spec"]["template"].get("metadata", {}).get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def env_of(container, config):
    """What a container sees: envFrom ConfigMaps first, then its own env."""
    values = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in config:
            values.update(config[ref["name"]])
    for item in container.get("env", []):
        if "value" in item:
            values[item["name"]] = item["value"]
    return values


def rules(rendered):
    docs = load(rendered)
    errors = []
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    config = {name: doc.get("data", {}) for name, doc in by_kind.get("ConfigMap", {}).items()}
    secrets = {
        name: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for name, doc in by_kind.get("Secret", {}).items()
    }
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    if len(namespaces) != 1 or None in namespaces:
        errors.append(f"objects are not all in one namespace: {sorted(map(str, namespaces))}")

    images = set()
    for kind in POD_OWNERS:
        for name, doc in by_kind.get(kind, {}).items():
            where = f"{kind}/{name}"
            spec = pod_spec(doc)
            if kind == "Deployment" and not selects(doc["spec"]["selector"].get("matchLabels"), template_labels(doc)):
                errors.append(f"{where}: selector does not match its pod template labels")
            security = spec.get("securityContext", {})
            if security.get("runAsNonRoot") is not True or security.get("runAsUser") != RUN_AS_USER:
                errors.append(f"{where}: pod must set runAsNonRoot: true and runAsUser: {RUN_AS_USER}")
            if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                errors.append(f"{where}: pod seccompProfile must be RuntimeDefault")
            ports = set()
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                cwhere = f"{where} container {container['name']}"
                images.add(container.get("image"))
                context = container.get("securityContext", {})
                if context.get("allowPrivilegeEscalation") is not False:
                    errors.append(f"{cwhere}: allowPrivilegeEscalation must be false")
                if context.get("readOnlyRootFilesystem") is not True:
                    errors.append(f"{cwhere}: readOnlyRootFilesystem must be true")
                if "ALL" not in context.get("capabilities", {}).get("drop", []):
                    errors.append(f"{cwhere}: capabilities must drop ALL")
                resources = container.get("resources", {})
                if not resources.get("requests") or not resources.get("limits"):
                    errors.append(f"{cwhere}: needs resource requests and limits")
                for source in container.get("envFrom", []):
                    if "configMapRef" in source and source["configMapRef"]["name"] not in config:
                        errors.append(f"{cwhere}: envFrom names a missing ConfigMap {source['configMapRef']['name']}")
                    if "secretRef" in source and source["secretRef"]["name"] not in secrets:
                        errors.append(f"{cwhere}: envFrom names a missing Secret {source['secretRef']['name']}")
                if kind == "Deployment":
                    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                        if probe not in container:
                            errors.append(f"{cwhere}: needs a {probe}")
                ports |= {str(port["containerPort"]) for port in container.get("ports", [])}
                env = env_of(container, config)
                if "CRUST_WORKER_DRAIN_SECS" in env and container.get("command") == ["crust-worker"]:
                    drain = int(env["CRUST_WORKER_DRAIN_SECS"])
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                    # drain, then up to ~10 s to hand the rest back, plus a margin
                    if grace < drain + 10 + 5:
                        errors.append(
                            f"{where}: terminationGracePeriodSeconds {grace} < CRUST_WORKER_DRAIN_SECS "
                            f"{drain} + 10 s hand-back + 5 s margin"
                        )
            annotations = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
            if kind == "Deployment":
                if annotations.get("prometheus.io/scrape") != "true":
                    errors.append(f"{where}: pods lack prometheus.io/scrape: \"true\"")
                elif annotations.get("prometheus.io/port") not in ports:
                    errors.append(f"{where}: prometheus.io/port is not a container port")
    if len(images) != 1 or any(image is None or ":" not in image for image in images):
        errors.append(f"containers must share one tagged image (kustomize images:), got {sorted(map(str, images))}")

    # Worker pools (and every other Deployment) must own their pods alone:
    # a selector that also matches another Deployment's pods makes the two
    # fight over them, and a topology spread must count its own pods.
    for name, doc in deployments.items():
        selector = doc["spec"]["selector"].get("matchLabels")
        for other, other_doc in deployments.items():
            if other != name and selects(selector, template_labels(other_doc)):
                errors.append(f"Deployment/{name}: selector also matches the pods of Deployment/{other}")
        for spread in pod_spec(doc).get("topologySpreadConstraints", []):
            if not selects(spread.get("labelSelector", {}).get("matchLabels"), template_labels(doc)):
                errors.append(f"Deployment/{name}: a topologySpreadConstraint does not select its own pods")
    pods = [template_labels(doc) for doc in deployments.values()]
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in by_kind.get(kind, {}).items():
            selector = doc["spec"].get("selector", {})
            selector = selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
            if not any(selects(selector, labels) for labels in pods):
                errors.append(f"{kind}/{name}: selector matches no Deployment's pods")

    autoscaled = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, doc in by_kind.get(kind, {}).items():
            ref = doc["spec"]["scaleTargetRef"]
            target = ref["name"]
            if ref.get("kind", "Deployment") != "Deployment" or target not in deployments:
                errors.append(f"{kind}/{name}: scaleTargetRef names no Deployment here ({target})")
            if target in autoscaled:
                errors.append(f"Deployment/{target} has two autoscalers: {autoscaled[target]} and {kind}/{name}")
            autoscaled[target] = f"{kind}/{name}"
            low, high = (("minReplicas", "maxReplicas") if kind == "HorizontalPodAutoscaler"
                         else ("minReplicaCount", "maxReplicaCount"))
            if doc["spec"].get(low, 1) > doc["spec"].get(high, 100):
                errors.append(f"{kind}/{name}: {low} > {high}")

    auths = by_kind.get("TriggerAuthentication", {})
    for name, doc in auths.items():
        for ref in doc["spec"].get("secretTargetRef", []):
            if ref["key"] not in secrets.get(ref["name"], set()):
                errors.append(f"TriggerAuthentication/{name}: Secret {ref['name']} has no key {ref['key']}")
    for name, doc in by_kind.get("ScaledObject", {}).items():
        target = deployments.get(doc["spec"]["scaleTargetRef"]["name"])
        for trigger in doc["spec"]["triggers"]:
            ref = trigger.get("authenticationRef")
            if ref and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication" and ref["name"] not in auths:
                errors.append(f"ScaledObject/{name}: no TriggerAuthentication {ref['name']}")
            if trigger["type"] == "rabbitmq" and target is not None:
                env = env_of(pod_spec(target)["containers"][0], config)
                prefix = env.get("CRUST_QUEUE_PREFIX", "crust")
                queues = [
                    f"{prefix}.jobs.{queue.strip()}"
                    for queue in env.get("CRUST_WORKER_QUEUES", "default").split(",")
                ]
                if trigger["metadata"].get("queueName") not in queues:
                    errors.append(
                        f"ScaledObject/{name}: queueName {trigger['metadata'].get('queueName')!r} "
                        f"is none of the workers' queues {queues!r}"
                    )

    for error in errors:
        print(f"FAIL {error}")
    return 1 if errors else 0


def negatives(rendered, outdir):
    """Writes broken copies that a stage must reject, and prints one line per
    copy for check.sh: stage, schema (or -), file, what is wrong."""
    docs = load(rendered)

    def broken(kind, name, change, stage, schema, label):
        changed = copy.deepcopy(docs)
        target = next(doc for doc in changed if doc["kind"] == kind and doc["metadata"]["name"] == name)
        change(target)
        if stage == "core":
            out = [doc for doc in changed if is_core(doc["apiVersion"])]
        elif stage == "keda":
            out = [target]
        else:
            out = changed
        path = os.path.join(outdir, f"{len(os.listdir(outdir)):02d}-{stage}.yaml")
        with open(path, "w") as handle:
            yaml.safe_dump_all(out, handle, sort_keys=False)
        print(f"{stage}\t{schema}\t{path}\t{kind}/{name}: {label}")

    def container(doc):
        return pod_spec(doc)["containers"][0]

    broken("Deployment", "crust-api", lambda d: d["spec"].__setitem__("replicas", "two"),
           "core", "-", 'replicas: "two"')
    broken("Deployment", "crust-worker",
           lambda d: container(d)["securityContext"].__setitem__("readOnlyRootFS", True),
           "core", "-", "unknown field securityContext.readOnlyRootFS")
    broken("ScaledObject", "crust-worker",
           lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("mode", "Length"),
           "keda", KEDA_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")], "rabbitmq mode: Length")
    broken("ScaledObject", "crust-worker", lambda d: d["spec"].__setitem__("maxReplicas", 20),
           "keda", KEDA_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")], "unknown field spec.maxReplicas")
    broken("TriggerAuthentication", "crust-rabbitmq",
           lambda d: d["spec"].__setitem__("secretRef", d["spec"].pop("secretTargetRef")),
           "keda", KEDA_SCHEMAS[("keda.sh/v1alpha1", "TriggerAuthentication")], "unknown field spec.secretRef")
    broken("Deployment", "crust-worker", lambda d: pod_spec(d).__setitem__("terminationGracePeriodSeconds", 25),
           "rules", "-", "terminationGracePeriodSeconds: 25 (drain is 20)")
    broken("HorizontalPodAutoscaler", "crust-api",
           lambda d: d["spec"]["scaleTargetRef"].__setitem__("name", "crust-worker"),
           "rules", "-", "an HPA on the KEDA-scaled worker")
    if any(doc["kind"] == "Deployment" and doc["metadata"]["name"] == "crust-worker-bulk" for doc in docs):
        broken("Deployment", "crust-worker-bulk",
               lambda d: [labels.__setitem__("app.kubernetes.io/component", "worker")
                          for labels in (d["spec"]["selector"]["matchLabels"], template_labels(d))],
               "rules", "-", "a queue's pool selecting the default pool's pods")
        broken("ScaledObject", "crust-worker-bulk",
               lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("queueName", "crust.jobs.default"),
               "rules", "-", "a queue's pool scaled on another queue")
    return 0


def dashboard(path):
    with open(path) as handle:
        board = json.load(handle)
    errors = []
    panels = []
    for panel in board.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    ids = [panel.get("id") for panel in panels]
    if len(ids) != len(set(ids)):
        errors.append("panel ids are not unique")
    variables = {var["name"] for var in board.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        errors.append("no datasource template variable")
    queries = 0
    for panel in panels:
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {panel.get('title')!r} does not use ${{datasource}}")
        for target in panel.get("targets", []):
            queries += 1
            expr = target.get("expr", "")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                errors.append(f"panel {panel.get('title')!r}: unbalanced expression {expr}")
            for used in re.findall(r"\$(\w+)", expr):
                if used not in variables and not used.startswith("__"):
                    errors.append(f"panel {panel.get('title')!r} uses undefined ${used}")
    for error in errors:
        print(f"FAIL {error}")
    print(f"   {len(panels)} panels, {queries} queries, variables: {', '.join(sorted(variables))}")
    return 1 if errors else 0



def collector_parts(docs):
    """(collector config, Deployment, Service, namespace) of a rendered deploy/otel."""
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    deployment = by_kind["Deployment"][0]
    service = by_kind["Service"][0]
    maps = {doc["metadata"]["name"]: doc for doc in by_kind.get("ConfigMap", [])}
    volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
    container = pod_spec(deployment)["containers"][0]
    config_arg = next((a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--config=")), None)
    config, errors = None, []
    for mount in container.get("volumeMounts", []):
        if config_arg and config_arg.startswith(mount["mountPath"].rstrip("/") + "/"):
            source = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
            key = config_arg[len(mount["mountPath"].rstrip("/")) + 1:]
            if source not in maps or key not in maps[source].get("data", {}):
                errors.append(f"--config={config_arg} names no key of a mounted ConfigMap")
            else:
                config = yaml.safe_load(maps[source]["data"][key])
    if config is None and not errors:
        errors.append(f"the collector's --config ({config_arg}) is not in a mounted ConfigMap")
    return config, deployment, service, deployment["metadata"].get("namespace"), errors


def port_of(endpoint):
    return int(str(endpoint).rsplit(":", 1)[1])


def otel(rendered_otel, rendered_crust):
    docs = load(rendered_otel)
    config, deployment, service, namespace, errors = collector_parts(docs)
    if config is not None:
        service_section = config.get("service", {})
        for section in ("receivers", "processors", "exporters", "extensions"):
            config.setdefault(section, {})
        for name in service_section.get("extensions", []):
            if name not in config["extensions"]:
                errors.append(f"service.extensions names an undefined extension {name}")
        pipelines = service_section.get("pipelines", {})
        if not any(name.split("/")[0] == "traces" for name in pipelines):
            errors.append("no traces pipeline")
        for pipeline, parts in pipelines.items():
            for section in ("receivers", "processors", "exporters"):
                for name in parts.get(section, []):
                    if name not in config[section]:
                        errors.append(f"pipeline {pipeline} names an undefined {section[:-1]} {name}")
            if not parts.get("receivers") or not parts.get("exporters"):
                errors.append(f"pipeline {pipeline} needs receivers and exporters")
        http = config["receivers"].get("otlp", {}).get("protocols", {}).get("http")
        if not http:
            errors.append("no otlp receiver with the http protocol (Crust sends OTLP/HTTP)")
        else:
            receiver_port = port_of(http.get("endpoint", "0.0.0.0:4318"))
            container = pod_spec(deployment)["containers"][0]
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if receiver_port not in named.values():
                errors.append(f"the collector container does not expose the OTLP/HTTP port {receiver_port}")
            reaching = {
                p["port"] for p in service["spec"]["ports"]
                if named.get(p.get("targetPort"), p.get("targetPort")) == receiver_port
            }
            if not reaching:
                errors.append(f"Service/{service['metadata']['name']} has no port reaching the OTLP/HTTP port {receiver_port}")
            if not selects(service["spec"]["selector"], template_labels(deployment)):
                errors.append("the collector Service selects no collector pod")
            crust = [d for d in load(rendered_crust) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "crust-config"]
            endpoint = crust[0].get("data", {}).get("OTEL_EXPORTER_OTLP_ENDPOINT") if crust else None
            if endpoint:
                url = urlparse(endpoint)
                hosts = {f"{service['metadata']['name']}.{namespace}", f"{service['metadata']['name']}.{namespace}.svc",
                         f"{service['metadata']['name']}.{namespace}.svc.cluster.local"}
                if url.scheme != "http":
                    errors.append(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint}: Crust sends plain http")
                if url.hostname not in hosts:
                    errors.append(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint} does not name the collector Service ({sorted(hosts)[0]})")
                if url.port not in reaching:
                    errors.append(f"OTEL_EXPORTER_OTLP_ENDPOINT {endpoint}: port {url.port} does not reach the OTLP/HTTP receiver")
    for error in errors:
        print(f"FAIL deploy/otel: {error}")
    return 1 if errors else 0


def otel_negatives(rendered_otel, outdir):
    docs = load(rendered_otel)

    def broken(change, label):
        changed = copy.deepcopy(docs)
        change(changed)
        path = os.path.join(outdir, f"{len(os.listdir(outdir)):02d}-otel.yaml")
        with open(path, "w") as handle:
            yaml.safe_dump_all(changed, handle, sort_keys=False)
        print(f"{path}\t{label}")

    def edit_config(changed, change):
        for doc in changed:
            if doc["kind"] == "ConfigMap":
                for key, text in doc["data"].items():
                    config = yaml.safe_load(text)
                    change(config)
                    doc["data"][key] = yaml.safe_dump(config)

    def of_kind(changed, kind):
        return next(doc for doc in changed if doc["kind"] == kind)

    broken(lambda c: edit_config(c, lambda cfg: cfg["service"]["pipelines"]["traces"]["exporters"].append("zipkin")),
           "a pipeline naming an undefined exporter")
    broken(lambda c: edit_config(c, lambda cfg: cfg["receivers"]["otlp"]["protocols"].pop("http")),
           "no OTLP/HTTP receiver")
    broken(lambda c: of_kind(c, "Service")["spec"]["ports"][0].__setitem__("targetPort", "otlp-grpc"),
           "the Service's 4318 reaching the gRPC port")
    broken(lambda c: pod_spec(of_kind(c, "Deployment"))["containers"][0].__setitem__("args", ["--config=/etc/none.yaml"]),
           "--config outside the mounted ConfigMap")
    return 0


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    sys.exit({"split": split, "rules": rules, "negatives": negatives, "dashboard": dashboard,
              "otel": otel, "otel-negatives": otel_negatives}[command](*args))
