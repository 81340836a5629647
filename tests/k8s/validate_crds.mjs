// Validates Prometheus Operator custom resources (JSON documents on stdin, one array) against the CRDs' OpenAPI
// schemas shipped in @kubernetes-models/prometheus-operator; prints one JSON result per document.
import { readFileSync } from "node:fs";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const results = JSON.parse(readFileSync(0, "utf8")).map((document) => {
  const Model = monitoring[document.kind];
  if (document.apiVersion !== "monitoring.coreos.com/v1" || !Model) {
    return { kind: document.kind, ok: false, error: `no schema for ${document.apiVersion} ${document.kind}` };
  }
  try {
    new Model(document).validate();
    return { kind: document.kind, ok: true };
  } catch (error) {
    return { kind: document.kind, ok: false, error: error.message };
  }
});
console.log(JSON.stringify(results));
