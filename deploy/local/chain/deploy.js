// Compiles TestUSDC.sol with solc-js and deploys it on the local chain from
// the chain's first unlocked account (the treasury), unless the address
// recorded in the output file already holds the contract. Prints the address.
//
//   node deploy.js <rpc-url> <out-file> <initial-supply-in-units>
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const [rpcUrl, outFile, supply] = process.argv.slice(2);
if (!rpcUrl || !outFile || !supply) {
  console.error('usage: node deploy.js <rpc-url> <out-file> <initial-supply-in-units>');
  process.exit(2);
}

let nextId = 1;
async function rpc(method, params) {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

function compile() {
  const source = fs.readFileSync(path.join(__dirname, 'TestUSDC.sol'), 'utf8');
  const input = {
    language: 'Solidity',
    sources: { 'TestUSDC.sol': { content: source } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: 'cancun',
      outputSelection: { '*': { '*': ['evm.bytecode.object'] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  return out.contracts['TestUSDC.sol'].TestUSDC.evm.bytecode.object;
}

async function main() {
  if (fs.existsSync(outFile)) {
    const known = fs.readFileSync(outFile, 'utf8').trim();
    if (known && (await rpc('eth_getCode', [known, 'latest'])) !== '0x') {
      console.log(known);
      return;
    }
  }
  const bytecode = compile();
  // The constructor's one uint256 argument, ABI-encoded as a 32-byte word.
  const arg = BigInt(supply).toString(16).padStart(64, '0');
  const [from] = await rpc('eth_accounts', []);
  const hash = await rpc('eth_sendTransaction', [{ from, data: '0x' + bytecode + arg, gas: '0x2dc6c0' }]);
  for (let i = 0; i < 600; i++) {
    const receipt = await rpc('eth_getTransactionReceipt', [hash]);
    if (receipt) {
      if (receipt.status !== '0x1') throw new Error(`deployment reverted: ${hash}`);
      fs.writeFileSync(outFile, receipt.contractAddress + '\n');
      console.log(receipt.contractAddress);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`deployment not mined after 60 s: ${hash}`);
}

main().catch((e) => {
  console.error(`deploy.js: ${e.message}`);
  process.exit(1);
});
