// Checks Cypher statements with Neo4j's own parser and semantic analysis (@neo4j-cypher/language-support).
//
// stdin: a JSON list of {name, statement, parameters?}, or an object
//   {statements: [...], labels?: [...], relationshipTypes?: [...], propertyKeys?: [...]}.
// - Every statement is linted once per Cypher version the package knows ("CYPHER 5", "CYPHER 25").
// - With `parameters` (the names the caller passes), a $parameter the caller does not pass is an error; without it,
//   parameter checks are skipped.
// - With a vocabulary (labels, relationship types, property keys), a name outside it is reported (a typo).
// - Every diagnostic fails the check, warnings included (deprecations, unknown names).
// stdout: a JSON list of {name, version, severity, message, line, column}; also printed readably to stderr.
// Exit status: 0 clean, 1 diagnostics, 2 unusable input.
//
// The package's `validateSyntax` was renamed `lintCypherQuery` (it returns {diagnostics, symbolTables}).
import { allCypherVersions, lintCypherQuery } from '@neo4j-cypher/language-support';

const SEVERITY = { 1: 'error', 2: 'warning', 3: 'information', 4: 'hint' };

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function parseInput(text) {
  const input = JSON.parse(text);
  const statements = Array.isArray(input) ? input : input.statements;
  if (!Array.isArray(statements)) throw new Error('expected a list of statements');
  for (const item of statements) {
    if (typeof item?.name !== 'string' || typeof item?.statement !== 'string') {
      throw new Error(`every entry needs a string name and statement: ${JSON.stringify(item)}`);
    }
  }
  const vocabulary = Array.isArray(input) ? {} : input;
  return { statements, vocabulary };
}

function lint({ name, statement, parameters }, vocabulary) {
  const found = [];
  for (const version of allCypherVersions) {
    const schema = { defaultLanguage: version };
    for (const key of ['labels', 'relationshipTypes', 'propertyKeys']) {
      if (Array.isArray(vocabulary[key])) schema[key] = vocabulary[key];
    }
    if (Array.isArray(parameters)) schema.parameters = Object.fromEntries(parameters.map((p) => [p, null]));
    const { diagnostics } = lintCypherQuery(statement, schema);
    for (const d of diagnostics) {
      const isParameterCheck = d.message.startsWith('Parameter ') && d.message.endsWith(' is not defined.');
      if (isParameterCheck && !Array.isArray(parameters)) continue;
      found.push({
        name,
        version,
        severity: SEVERITY[d.severity] ?? String(d.severity),
        message: d.message,
        line: d.range.start.line + 1,
        column: d.range.start.character + 1,
      });
    }
  }
  return found;
}

let input;
try {
  input = parseInput(await readStdin());
} catch (error) {
  process.stderr.write(`validate.mjs: ${error.message}\n`);
  process.exit(2);
}
const problems = input.statements.flatMap((item) => lint(item, input.vocabulary));
for (const p of problems) {
  process.stderr.write(`${p.name} [${p.version}] ${p.line}:${p.column} ${p.severity}: ${p.message}\n`);
}
process.stdout.write(`${JSON.stringify(problems)}\n`);
process.stderr.write(`${input.statements.length} statement(s) checked, ${problems.length} problem(s)\n`);
process.exit(problems.length ? 1 : 0);
