// Validates every .glb under a folder with Khronos' glTF-Validator and prints one JSON report on stdout:
// {"files": N, "errors": total, "reports": {path: {errors, warnings, infos, messages: [first few errors]}}}.
// Usage: node validate_gltf.js FOLDER
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

function glbFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return glbFiles(full);
    return entry.name.endsWith(".glb") ? [full] : [];
  });
}

async function main() {
  const root = process.argv[2];
  const reports = {};
  let errors = 0;
  for (const file of glbFiles(root).sort()) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: file, maxIssues: 0, format: "glb",
    });
    const issues = report.issues;
    errors += issues.numErrors;
    reports[path.relative(root, file)] = {
      errors: issues.numErrors, warnings: issues.numWarnings, infos: issues.numInfos,
      messages: issues.messages.filter((m) => m.severity <= 1).slice(0, 20)
        .map((m) => `${m.severity === 0 ? "error" : "warning"} ${m.code} ${m.pointer || ""}: ${m.message}`),
    };
  }
  process.stdout.write(JSON.stringify({ files: Object.keys(reports).length, errors, reports }));
}

main().catch((error) => { console.error(error); process.exit(1); });
