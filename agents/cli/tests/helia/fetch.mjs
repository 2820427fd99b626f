// Fetches a UnixFS DAG by CID from one trustless gateway with Helia (the IPFS project's
// JavaScript implementation), verifying every block, and writes it under an output folder.
// Nothing but the given gateway is contacted: no libp2p, no discovery, no public routers.
//
//   node fetch.mjs <gateway-url> <cid> <out-dir>
//
// Prints one JSON line: {"cid": ..., "files": [{"path", "bytes"}...]}.
import { createHeliaLight } from 'helia'
import { trustlessGatewayBlockBroker } from '@helia/trustless-gateway-client'
import { fallbackRouter } from '@helia/fallback-router'
import { unixfs } from '@helia/unixfs'
import { CID } from 'multiformats/cid'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const [gateway, cidText, outDir] = process.argv.slice(2)
if (!gateway || !cidText || !outDir) {
  console.error('usage: node fetch.mjs <gateway-url> <cid> <out-dir>')
  process.exit(2)
}

// A primary router that knows nothing: with the fallback router alone, Helia's provider
// lookup never settles (see TOOLCHAIN.md).
const nothing = { name: 'nothing', async * findProviders () {} }
const helia = await createHeliaLight({
  routers: [nothing, fallbackRouter({ gateways: [gateway], shuffle: false })],
  blockBrokers: [trustlessGatewayBlockBroker({ allowInsecure: true, allowLocal: true })]
})
const fs = unixfs(helia)
const signal = AbortSignal.timeout(30_000)
const files = []

async function walk (cid, rel) {
  const st = await fs.stat(cid, { signal })
  if (st.type === 'directory') {
    await mkdir(join(outDir, rel), { recursive: true })
    for await (const entry of fs.ls(cid, { signal })) {
      await walk(entry.cid, join(rel, entry.name))
    }
  } else {
    const chunks = []
    for await (const chunk of fs.cat(cid, { signal })) chunks.push(chunk)
    const bytes = Buffer.concat(chunks)
    await writeFile(join(outDir, rel), bytes)
    files.push({ path: rel, bytes: bytes.length })
  }
}

try {
  await walk(CID.parse(cidText), '')
  console.log(JSON.stringify({ cid: cidText, files }))
} finally {
  await helia.stop()
}
