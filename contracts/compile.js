#!/usr/bin/env node
// Compile SolarProperty.sol with the pinned solcjs from node_modules (no downloaded compiler) and write the
// committed artifact contracts/build/SolarProperty.json. The hub loads that artifact at run time, so running
// the hub needs no compiler; tests/contracts/test_artifact.py recompiles and asserts the bytes are identical.
//
//   node contracts/compile.js                     write contracts/build/SolarProperty.json
//   node contracts/compile.js --stdout            print the artifact instead of writing it
//   node contracts/compile.js --stdout FILE:NAME  compile another contract (e.g. a test contract) the same way
//
// Determinism: source unit names are repository-relative ("contracts/SolarProperty.sol",
// "@openzeppelin/contracts/..."), never absolute paths, so the metadata hash embedded in the bytecode does not
// depend on where the repository is checked out; settings are fixed below; JSON keys are written in a fixed order.
'use strict';

const fs = require('fs');
const path = require('path');

const REPO = path.resolve(__dirname, '..');
const NODE_MODULES = path.join(REPO, 'node_modules');
const solc = require(path.join(NODE_MODULES, 'solc'));

const DEFAULT_TARGET = 'contracts/SolarProperty.sol:SolarProperty';
const ARTIFACT = path.join(REPO, 'contracts', 'build', 'SolarProperty.json');

// Cancun: transient storage for ReentrancyGuardTransient, PUSH0/MCOPY; supported by py-evm, anvil and mainnet.
const SETTINGS = {
  evmVersion: 'cancun',
  optimizer: { enabled: true, runs: 1000 },
  viaIR: true,
  metadata: { bytecodeHash: 'ipfs' },
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
  },
};

/** Resolve an import's source unit name to a file: @openzeppelin/* from node_modules, the rest from the repo. */
function resolveImport(unitName) {
  if (path.isAbsolute(unitName) || unitName.split('/').includes('..')) {
    return { error: `import must be a repository-relative path: ${unitName}` };
  }
  const base = unitName.startsWith('@openzeppelin/') ? NODE_MODULES : REPO;
  const file = path.join(base, unitName);
  if (!fs.existsSync(file)) return { error: `file not found: ${unitName}` };
  return { contents: fs.readFileSync(file, 'utf8') };
}

/** Compile one contract ("path/to/File.sol:Name", path relative to the repository) into an artifact object. */
function compile(target) {
  const [sourceName, contractName] = target.split(':');
  if (!sourceName || !contractName) throw new Error(`target must be FILE:NAME, got ${target}`);
  const input = {
    language: 'Solidity',
    sources: { [sourceName]: { content: fs.readFileSync(path.join(REPO, sourceName), 'utf8') } },
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: resolveImport }));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  // Warnings in our own sources are shown; the vendored OpenZeppelin code warns about its (intended) use of
  // transient storage on every build, which is counted rather than repeated.
  const warnings = (output.errors || []).filter((e) => e.severity !== 'error');
  const vendored = (w) => ((w.sourceLocation && w.sourceLocation.file) || '').startsWith('@openzeppelin/');
  for (const w of warnings.filter((x) => !vendored(x))) process.stderr.write(w.formattedMessage + '\n');
  const skipped = warnings.filter(vendored).length;
  if (skipped) process.stderr.write(`(${skipped} warning(s) in @openzeppelin sources not shown)\n`);
  if (errors.length) {
    throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  }
  const contract = output.contracts[sourceName] && output.contracts[sourceName][contractName];
  if (!contract) throw new Error(`${contractName} not found in ${sourceName}`);
  const ozVersion = JSON.parse(
    fs.readFileSync(path.join(NODE_MODULES, '@openzeppelin', 'contracts', 'package.json'), 'utf8'),
  ).version;
  return {
    contractName,
    sourceName,
    compiler: { name: 'solcjs', version: solc.version() },
    openzeppelinContracts: ozVersion,
    settings: {
      evmVersion: SETTINGS.evmVersion,
      optimizer: SETTINGS.optimizer,
      viaIR: SETTINGS.viaIR,
      metadata: SETTINGS.metadata,
    },
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
  };
}

function serialize(artifact) {
  return JSON.stringify(artifact, null, 2) + '\n';
}

function main(argv) {
  const toStdout = argv.includes('--stdout');
  const targets = argv.filter((a) => !a.startsWith('--'));
  const target = targets[0] || DEFAULT_TARGET;
  const text = serialize(compile(target));
  if (toStdout) {
    process.stdout.write(text);
  } else {
    if (target !== DEFAULT_TARGET) throw new Error('only the default target is written to contracts/build');
    fs.mkdirSync(path.dirname(ARTIFACT), { recursive: true });
    fs.writeFileSync(ARTIFACT, text);
    process.stderr.write(`wrote ${path.relative(REPO, ARTIFACT)}\n`);
  }
}

module.exports = { compile, serialize, SETTINGS, resolveImport };

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(String(err.message || err) + '\n');
    process.exit(1);
  }
}
