// RFC 9162 inclusion proofs checked in the browser (Web Crypto SHA-256), the way
// lucid/lib/merkle.py and chunkproof.py check them: the leaf is SHA-256(0x00 ‖ entry),
// each level SHA-256(0x01 ‖ left ‖ right), and the path must lead to the session root.
import type { InclusionProof } from "./gen/lucid/common/v1/proofs";

export function fromHex(text: string): Uint8Array | null {
  if (text.length % 2 || /[^0-9a-f]/i.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(prefix: number, ...parts: Uint8Array[]): Promise<Uint8Array> {
  const total = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  total[0] = prefix;
  let at = 1;
  for (const part of parts) {
    total.set(part, at);
    at += part.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", total));
}

function bitLength(n: number): number {
  return n === 0 ? 0 : Math.floor(Math.log2(n)) + 1;
}

function bitCount(n: number): number {
  let count = 0;
  for (let v = n; v > 0; v = Math.floor(v / 2)) count += v % 2;
  return count;
}

/** The root an audit path leads to from ``leaf`` (RFC 9162 §2.1.3.2), or null when the
 * index, the tree size and the path length cannot fit together. */
export async function rootFromProof(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  path: Uint8Array[],
): Promise<Uint8Array | null> {
  if (!(index >= 0 && index < treeSize)) return null;
  const inner = bitLength(index ^ (treeSize - 1));
  const border = bitCount(Math.floor(index / 2 ** inner));
  if (path.length !== inner + border) return null;
  let node = leaf;
  for (let level = 0; level < path.length; level++) {
    // below ``inner`` the bit of the index says the side; above it every sibling is left
    const left = level < inner ? Math.floor(index / 2 ** level) % 2 === 1 : true;
    node = left ? await sha256(1, path[level], node) : await sha256(1, node, path[level]);
  }
  return node;
}

/** Whether ``proof`` shows that the chunk whose Merkle entry is ``entryHex`` is in the
 * tree whose root is ``rootHex``; with the reason when it does not. */
export async function checkInclusion(
  proof: InclusionProof | undefined,
  entryHex: string,
  rootHex: string,
): Promise<[boolean, string]> {
  if (!proof || !rootHex) return [false, "no proof yet (the session is not finalized)"];
  const entry = fromHex(entryHex);
  const root = fromHex(rootHex);
  const path = proof.auditPath.map(fromHex);
  if (!entry || !root || path.some((p) => p === null || p.length !== 32)) {
    return [false, "the proof holds something that is not a SHA-256 hash"];
  }
  const leaf = await sha256(0, entry);
  if (toHex(leaf) !== proof.leafHash) return [false, "the leaf hash is not SHA-256(0x00 ‖ entry)"];
  const reached = await rootFromProof(leaf, proof.leafIndex, proof.treeSize, path as Uint8Array[]);
  if (!reached) return [false, "the path does not fit the tree size"];
  if (toHex(reached) !== rootHex) return [false, "the path does not lead to the session root"];
  return [true, ""];
}
