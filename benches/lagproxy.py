# A TCP proxy that adds a one-way delay of D ms in each direction, pipelined (each read is
# forwarded D ms after it arrived), to measure dbbackup against a storage server with latency:
#   python3 benches/lagproxy.py LISTEN_PORT TARGET_PORT D_MS
# Used by benches/remote_lag.sh; loopback only.
import asyncio, sys, time
LISTEN, TARGET, D = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
async def pump(r, w):
    q = asyncio.Queue()
    async def rd():
        while True:
            b = await r.read(1 << 16)
            await q.put((time.monotonic(), b))
            if not b: return
    async def wr():
        while True:
            t, b = await q.get()
            dt = t + D - time.monotonic()
            if dt > 0: await asyncio.sleep(dt)
            if not b:
                try: w.write_eof()
                except Exception: pass
                return
            w.write(b); await w.drain()
    try: await asyncio.gather(rd(), wr())
    except Exception: pass
    finally: w.close()
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection('127.0.0.1', TARGET)
    await asyncio.gather(pump(cr, sw), pump(sr, cw))
async def main():
    s = await asyncio.start_server(handle, '127.0.0.1', LISTEN)
    async with s: await s.serve_forever()
asyncio.run(main())
