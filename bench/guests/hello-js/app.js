// The smallest JavaScript function: answers "hello". Built against the
// plain wasi:http/proxy world, so `wasmtime serve` runs it too.
addEventListener('fetch', (event) =>
  event.respondWith(new Response('hello', { headers: { 'content-type': 'text/plain' } })),
);
