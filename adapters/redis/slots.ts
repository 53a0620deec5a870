/**
 * Redis Cluster's key slots, computed as Redis does: CRC16/XMODEM (poly
 * 0x1021, init 0, no reflection) of the key's hash tag (the part between the
 * first `{` and the next `}`, when that part is not empty) or of the whole
 * key, modulo 16,384. keys.ts uses it to give each session partition a hash
 * tag of its own slot range; tests use it to check that the keys of one
 * script share a slot.
 */

/** Redis Cluster has this many slots, whatever its number of nodes. */
export const CLUSTER_SLOTS = 16_384

const TABLE = (() => {
  const table = new Uint16Array(256)
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8
    for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    table[byte] = crc
  }
  return table
})()

/** CRC16/XMODEM of the UTF-8 bytes of `data` (Redis' `crc16`; `crc16('123456789') === 0x31c3`). */
export function crc16 (data: string | Uint8Array): number {
  // ASCII strings (every key of Flow) are their own UTF-8 bytes: no buffer needed.
  const bytes = typeof data !== 'string' ? data : /^[\x00-\x7f]*$/.test(data) ? null : Buffer.from(data, 'utf8')
  const length = bytes === null ? data.length : bytes.length
  let crc = 0
  for (let i = 0; i < length; i++) {
    const byte = bytes === null ? (data as string).charCodeAt(i) : bytes[i] as number
    crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ byte) & 0xff] as number)
  }
  return crc
}

/** The part of `key` that Redis Cluster hashes: the hash tag when there is a non-empty one, else the key. */
export function hashedPart (key: string): string {
  const open = key.indexOf('{')
  if (open === -1) return key
  const close = key.indexOf('}', open + 1)
  if (close === -1 || close === open + 1) return key
  return key.slice(open + 1, close)
}

/** The cluster slot of `key` (Redis' `CLUSTER KEYSLOT`). */
export function keySlot (key: string): number {
  return crc16(hashedPart(key)) % CLUSTER_SLOTS
}
