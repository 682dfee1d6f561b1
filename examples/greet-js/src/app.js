// A Nimbus function in JavaScript: reads its configuration, counts visits in
// a key-value store and sends an event, all through Nimbus's host
// interfaces (no network hop), then consumes that event.
//
//   GET /greet/NAME  ->  {"message": "GREETING, NAME!", "visits": N, "event": ID, "lang": "js"}
//   GET /greet-last  ->  the last event this function consumed
//   an event (a queue delivery: `ce-id` header) -> kept as the last one
//
// Built with componentize-js against `wit/app` (`npm run build`).

import { get as configGet } from 'wasi:config/store@0.2.0-rc.1';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { send } from 'nimbus:events/producer@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function handle(request) {
  const url = new URL(request.url);
  const counters = open('counters');

  const eventId = request.headers.get('ce-id');
  if (eventId) {
    const body = new Uint8Array(await request.arrayBuffer());
    counters.set('last-greeting', body);
    console.log(`event ${eventId}: ${body.length} bytes`);
    return new Response('ok');
  }

  if (url.pathname.endsWith('/greet-last')) {
    const last = counters.get('last-greeting');
    return last === undefined
      ? new Response('no event consumed yet\n', { status: 404 })
      : new Response(decoder.decode(last), { headers: { 'content-type': 'application/json' } });
  }

  const name = decodeURIComponent(url.pathname.split('/').pop() || 'world');
  const greeting = configGet('greeting') ?? 'Hello';
  const visits = Number(increment(counters, 'visits', 1n));
  const payload = JSON.stringify({ name, visits, lang: 'js' });
  const event = send('greetings', {
    body: encoder.encode(payload),
    contentType: 'application/json',
    type: 'dev.nimbus.example.greeted',
  });
  return Response.json({ message: `${greeting}, ${name}!`, visits, event, lang: 'js' });
}

addEventListener('fetch', (event) =>
  event.respondWith(
    handle(event.request).catch((e) => {
      // A host interface's error arrives as an exception carrying its payload.
      const detail = e && e.payload !== undefined ? JSON.stringify(e.payload) : String(e);
      console.error(`greet failed: ${detail}`);
      return new Response(`greet failed: ${detail}\n`, { status: 500 });
    }),
  ),
);
