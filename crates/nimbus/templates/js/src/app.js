// {{name}}: a Nimbus function in JavaScript, built with componentize-js
// against wit/ (every Nimbus interface: wasi:keyvalue, wasi:config,
// nimbus:data, nimbus:events). `nimbus deploy` builds it (build.sh).

import { get } from 'wasi:config/store@0.2.0-rc.1';

addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  const greeting = get('greeting') ?? 'Hello';
  event.respondWith(
    new Response(`${greeting} from {{name}} (JavaScript)! You asked for ${url.pathname}\n`, {
      headers: { 'content-type': 'text/plain' },
    }),
  );
});
