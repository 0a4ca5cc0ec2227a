import { connect, createServer, type Socket } from 'node:net'

// A TCP proxy in front of the test's S3 server, for what a real network does to uploads and
// reads: it slows each connection's requests down, or cuts the first connections that carry a
// large body part-way: a part's PUT (upstream), or a GET's answer (downstream). Bytes pass unchanged, Host header included, so presigned URLs
// signed for the proxy's address are checked by the server as they were signed.

export interface S3ProxyOptions {
  /** Bytes per second each connection may send upstream (unlimited when absent). */
  bytesPerSecond?: number
  /** Cuts a connection once it has sent this many bytes upstream… */
  cutAfterBytes?: number
  /** …this many times (then lets them all through). */
  cuts?: number
  /** Cuts a connection once this many bytes came back from the server… */
  cutDownstreamAfterBytes?: number
  /** …this many times. */
  downstreamCuts?: number
}

export interface S3Proxy {
  /** The proxy's address, as the S3 endpoint of a service. */
  endpoint: string
  /** Bytes sent upstream so far, over every connection. */
  upstreamBytes(): number
  /** Connections cut so far (upstream and downstream). */
  cut(): number
  close(): Promise<void>
}

export async function startS3Proxy(target: string, options: S3ProxyOptions = {}): Promise<S3Proxy> {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  let upstreamBytes = 0
  let cut = 0
  let downstreamCut = 0
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname)
    sockets.add(client).add(upstream)
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    let received = 0
    upstream.on('data', (chunk: Buffer) => {
      if (
        options.cutDownstreamAfterBytes !== undefined &&
        received + chunk.length > options.cutDownstreamAfterBytes &&
        downstreamCut < (options.downstreamCuts ?? Number.POSITIVE_INFINITY)
      ) {
        // What was received up to the limit goes through, then the connection breaks.
        client.write(chunk.subarray(0, options.cutDownstreamAfterBytes - received))
        downstreamCut++
        end()
        return
      }
      received += chunk.length
      if (!client.write(chunk)) {
        upstream.pause()
        client.once('drain', () => upstream.resume())
      }
    })
    let sent = 0
    client.on('data', (chunk: Buffer) => {
      if (
        options.cutAfterBytes !== undefined &&
        sent + chunk.length > options.cutAfterBytes &&
        cut < (options.cuts ?? Number.POSITIVE_INFINITY)
      ) {
        cut++
        end()
        return
      }
      sent += chunk.length
      upstreamBytes += chunk.length
      upstream.write(chunk)
      if (options.bytesPerSecond) {
        client.pause()
        setTimeout(() => client.resume(), (chunk.length / options.bytesPerSecond) * 1000)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy does not listen on a port')
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    upstreamBytes: () => upstreamBytes,
    cut: () => cut + downstreamCut,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
