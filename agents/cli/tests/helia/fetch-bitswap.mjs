// Fetches a UnixFS DAG by CID over bitswap with Helia (the IPFS project's JavaScript
// implementation), verifying every block, and writes it under an output folder.
// Helia's libp2p node gets TCP + noise + yamux + identify and dials ONLY the given multiaddr:
// no listening, no discovery (mDNS, bootstrap, DHT), no UPnP/NAT, no relays, no routers or
// gateways (the Helia node is built from createHeliaLight with the libp2p and bitswap mixins
// only, not createHelia, whose defaults reach the public network).
//
//   node fetch-bitswap.mjs <multiaddr with /p2p/<peer id>> <cid> <out-dir>
//
// Prints one JSON line: {"cid": ..., "peer": ..., "files": [{"path", "bytes"}...]}.
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { unixfs } from '@helia/unixfs'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const [addr, cidText, outDir] = process.argv.slice(2)
if (!addr || !cidText || !outDir) {
  console.error('usage: node fetch-bitswap.mjs <multiaddr>/p2p/<peer id> <cid> <out-dir>')
  process.exit(2)
}
const target = multiaddr(addr)
const [first] = target.getComponents()
if (!((first?.name === 'ip4' && first.value === '127.0.0.1') || (first?.name === 'ip6' && first.value === '::1'))) {
  console.error(`refusing to dial ${addr}: loopback addresses only (this is a test)`)
  process.exit(2)
}

// A router that knows nothing: bitswap asks the peers it is connected to, which is the one
// dialled below; no provider is ever looked up anywhere else.
const nothing = {
  name: 'nothing',
  async * findProviders () {},
  async * getClosestPeers () {},
  async findPeer () { throw new Error('no peer routing in this test') }
}
const helia = withBitswap(withLibp2pLight(createHeliaLight({ routers: [nothing] }), {
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  services: { identify: identify() }
}))
await helia.start()

const signal = AbortSignal.timeout(60_000)
const files = []
try {
  const connection = await helia.libp2p.dial(target, { signal })
  const fs = unixfs(helia)

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

  await walk(CID.parse(cidText), '')
  console.log(JSON.stringify({ cid: cidText, peer: connection.remotePeer.toString(), files }))
} finally {
  await helia.stop()
}
