import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP } from 'node:net'
import { Agent, request } from 'undici'
import { type ObjectStore, StoreError } from '../storage/object-store.ts'
import { SourceRejected } from './source.ts'

// Fetches an import's URL into the imports' store. Only http and https; the address every hop connects to
// (redirects included) must be public unless IMPORT_URL_ALLOW_PRIVATE is set. The check sits in
// the connection's DNS lookup, so the address checked is the address used: a host that resolves
// to a public address for a check and a private one for the request cannot slip through.

export interface DownloadLimits {
  maxBytes: number
  timeoutMs: number
  maxRedirects: number
  allowPrivate: boolean
}

/** Addresses an import must not reach: loopback, private, link-local (cloud metadata), reserved. */
const blocked = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv4')
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['64:ff9b::', 96],
] as const) {
  blocked.addSubnet(network, prefix, 'ipv6')
}

/** True for an address an import may not reach (IPv4-mapped IPv6 addresses are unwrapped). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return blocked.check(mapped[1] as string, 'ipv4')
  const family = isIP(address)
  if (family === 0) return true
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** Checks a URL before a job is created: scheme, and a host that is (or resolves to) public. */
export async function checkImportUrl(text: string, allowPrivate: boolean): Promise<URL> {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new SourceRejected('the url is not a valid absolute URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SourceRejected(`the url must use http or https, not ${url.protocol.replace(':', '')}`)
  }
  if (url.username || url.password) throw new SourceRejected('the url must not carry credentials')
  if (allowPrivate) return url
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const addresses = isIP(host) ? [host] : await resolve(host)
  if (addresses.some(isPrivateAddress)) {
    throw new SourceRejected(
      `the url's host ${url.hostname} is a private, loopback or link-local address (IMPORT_URL_ALLOW_PRIVATE is off)`,
    )
  }
  return url
}

function resolve(host: string): Promise<string[]> {
  return new Promise((done, fail) => {
    dnsLookup(host, { all: true }, (error, addresses) => {
      if (error) fail(new SourceRejected(`the url's host ${host} cannot be resolved (${error.code})`))
      else done(addresses.map((entry) => entry.address))
    })
  })
}

function guardedAgent(allowPrivate: boolean): Agent {
  return new Agent({
    connect: {
      lookup(hostname, options, callback) {
        dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
          if (error) return callback(error, '', 4)
          const usable = allowPrivate ? addresses : addresses.filter((entry) => !isPrivateAddress(entry.address))
          const chosen = usable[0]
          if (!chosen) {
            const refused = Object.assign(new Error(`${hostname} resolves to a private address`), { code: 'EPRIVATE' })
            return callback(refused, '', 4)
          }
          if ((options as { all?: boolean }).all)
            return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, [chosen])
          callback(null, chosen.address, chosen.family)
        })
      },
    },
  })
}

/**
 * Drops a response body unread. undici makes a body destroyed before its end emit an abort
 * error; without a listener that error would be unhandled and crash the process.
 */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on('error', () => {})
  body.destroy()
}

/**
 * Downloads `url` to `key` of the store, following redirects by hand (each hop checked again).
 * `stop` (a cancel, a shutdown) aborts it: the partial object is removed and its reason thrown.
 * @throws SourceRejected with a message for the job's error when anything goes wrong; StoreError
 *   when the store does not take the bytes
 */
export async function downloadSource(
  url: string,
  store: ObjectStore,
  key: string,
  limits: DownloadLimits,
  stop?: AbortSignal,
): Promise<{ path: string; sizeBytes: number; sha256: string; contentType: string | null }> {
  const agent = guardedAgent(limits.allowPrivate)
  const timeout = AbortSignal.timeout(limits.timeoutMs)
  const signal = stop ? AbortSignal.any([timeout, stop]) : timeout
  try {
    let current = await checkImportUrl(url, limits.allowPrivate)
    for (let hop = 0; ; hop++) {
      const response = await request(current, {
        dispatcher: agent,
        signal,
        headers: { 'user-agent': 'bulk-io import', accept: '*/*' },
      })
      if (response.statusCode >= 300 && response.statusCode < 400 && response.headers.location) {
        discard(response.body)
        if (hop >= limits.maxRedirects)
          throw new SourceRejected(`the url redirects more than ${limits.maxRedirects} times`)
        current = await checkImportUrl(
          new URL(String(response.headers.location), current).toString(),
          limits.allowPrivate,
        )
        continue
      }
      if (response.statusCode < 200 || response.statusCode >= 300) {
        discard(response.body)
        throw new SourceRejected(`the url answered HTTP ${response.statusCode}`)
      }
      const declared = Number(response.headers['content-length'])
      if (declared > limits.maxBytes) {
        discard(response.body)
        throw new SourceRejected(`the url's file is ${declared} bytes; IMPORT_URL_MAX_BYTES is ${limits.maxBytes}`)
      }
      const written = await store.write(key, response.body, {
        signal,
        limit: {
          maxBytes: limits.maxBytes,
          tooLarge: () =>
            new SourceRejected(`the url's file is larger than IMPORT_URL_MAX_BYTES (${limits.maxBytes} bytes)`),
        },
      })
      const contentType = response.headers['content-type']
      return {
        path: store.reference(key),
        sizeBytes: written.size,
        sha256: written.sha256,
        contentType: typeof contentType === 'string' ? contentType : null,
      }
    }
  } catch (error) {
    await store.delete(key).catch(() => {})
    if (stop?.aborted) throw stop.reason
    if (error instanceof SourceRejected || error instanceof StoreError) throw error
    if (timeout.aborted)
      throw new SourceRejected(`the download took longer than IMPORT_URL_TIMEOUT_MS (${limits.timeoutMs} ms)`)
    const cause = error as { code?: string; message?: string; cause?: { code?: string; message?: string } }
    const code = cause.cause?.code ?? cause.code
    if (code === 'EPRIVATE') {
      throw new SourceRejected(
        'the url resolves to a private, loopback or link-local address (IMPORT_URL_ALLOW_PRIVATE is off)',
      )
    }
    throw new SourceRejected(`the url cannot be fetched: ${cause.cause?.message ?? cause.message ?? code}`)
  } finally {
    await agent.close().catch(() => {})
  }
}
