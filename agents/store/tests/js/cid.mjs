// Prints the CID that Kubo's `ipfs add -r -H --cid-version=1 <path>` gives for a file or a
// folder, computed with the JavaScript UnixFS importer (an implementation independent of ours).
//
// Usage: node cid.mjs <path> [<path> ...]   (one CID per line, in argument order)
//
// Options that reproduce Kubo's defaults for `--cid-version=1` (which implies raw leaves):
//   cidVersion: 1, rawLeaves: true, reduceSingleLeafToSelf: true,
//   chunker: fixedSize({ chunkSize: 262144 }), layout: balanced({ maxChildrenPerNode: 174 }),
//   wrapWithDirectory: false,
// and, for a folder, one entry per file *and* per folder (so empty folders exist too), each with
// its path relative to the folder's parent, i.e. starting with the folder's own name
// ("out", "out/a.txt", "out/sub", "out/sub/b.bin", ...). The importer then emits the folder itself
// (path "out") last; its CID is the one Kubo prints for the folder. No mode or mtime is given.
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'
import fs from 'node:fs'
import path from 'node:path'

const options = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  wrapWithDirectory: false
}

function * entries (abs, rel) {
  const st = fs.lstatSync(abs)
  if (st.isSymbolicLink()) throw new Error(`symlink not supported: ${abs}`)
  if (st.isDirectory()) {
    yield { path: rel }
    for (const name of fs.readdirSync(abs)) {
      yield * entries(path.join(abs, name), `${rel}/${name}`)
    }
  } else if (st.isFile()) {
    yield { path: rel, content: fs.createReadStream(abs, { highWaterMark: 262144 }) }
  } else {
    throw new Error(`unsupported file type: ${abs}`)
  }
}

async function cidOf (p) {
  const abs = path.resolve(p)
  const name = path.basename(abs)
  const blockstore = new MemoryBlockstore()
  let root
  for await (const entry of importer(entries(abs, name), blockstore, options)) {
    if (entry.path === name) root = entry.cid
  }
  if (root === undefined) throw new Error(`importer gave no root for ${p}`)
  return root.toString()
}

for (const p of process.argv.slice(2)) {
  console.log(await cidOf(p))
}
