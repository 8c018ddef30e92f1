// Server-sent events over fetch() (EventSource cannot send an Authorization header): calls
// onData(text) with each event's `data:` payload, in order, until the stream ends.
export async function readSse(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replaceAll('\r\n', '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) onData(data.join('\n'));
    }
  }
}

// The API key the page sends (kept in this browser's localStorage), and its header.
const KEY_STORAGE = 'moeserve.apiKey';
export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}
export function setApiKey(key) {
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    /* private mode: the key lasts until the page closes */
  }
  sessionKey = key;
}
let sessionKey = '';
export function authHeaders() {
  const key = apiKey() || sessionKey;
  return key ? { Authorization: `Bearer ${key}` } : {};
}
