// The chat tab: a conversation streamed from /v1/chat/completions (the server applies the
// model's chat template), with tokens/s and time to first token from the stream's usage.
import { authHeaders, readSse } from './sse.js';

export class Chat {
  constructor({ log, form, input, maxTokens, temperature, send, clear, stats, onUnauthorized, model }) {
    Object.assign(this, { log, form, input, maxTokens, temperature, send, clear, stats, onUnauthorized, model });
    this.messages = [];  // [{role, content}] sent so far
    this.controller = null;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (this.controller) this.controller.abort();
      else this.submit();
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        if (!this.controller) this.submit();
      }
    });
    clear.addEventListener('click', () => {
      if (this.controller) this.controller.abort();
      this.messages = [];
      this.log.querySelectorAll('.msg').forEach((el) => el.remove());
      this.stats.textContent = '';
    });
  }

  bubble(role, text) {
    const el = document.createElement('div');
    el.className = `msg ${role}`;
    el.textContent = text;
    this.log.appendChild(el);
    this.log.scrollTop = this.log.scrollHeight;
    return el;
  }

  async submit() {
    const text = this.input.value.trim();
    if (!text) return;
    this.input.value = '';
    this.messages.push({ role: 'user', content: text });
    this.bubble('user', text);
    const reply = this.bubble('assistant', '');
    reply.dataset.state = 'streaming';
    this.controller = new AbortController();
    this.send.textContent = 'Stop';
    const started = performance.now();
    let firstAt = null;
    let tokens = 0;
    let content = '';
    const body = {
      messages: this.messages,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
      max_tokens: Number(this.maxTokens.value) || 128,
      temperature: Number(this.temperature.value),
    };
    const model = this.model();
    if (model) body.model = model;
    const show = () => {
      const now = performance.now();
      const ttft = firstAt == null ? '' : ` · first token ${(firstAt - started).toFixed(0)} ms`;
      const rate = firstAt != null && tokens > 1 && now > firstAt
        ? ` · ${(((tokens - 1) * 1000) / (now - firstAt)).toFixed(1)} tokens/s` : '';
      this.stats.textContent = `${tokens} tokens${rate}${ttft}`;
    };
    try {
      const response = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...authHeaders() },
        body: JSON.stringify(body),
        signal: this.controller.signal,
      });
      if (!response.ok) {
        if (response.status === 401) this.onUnauthorized();
        let message = `${response.status} ${response.statusText}`;
        try {
          message = (await response.json()).error.message;
        } catch { /* not JSON */ }
        throw new Error(message);
      }
      await readSse(response, (data) => {
        if (data === '[DONE]') return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          if (firstAt == null) firstAt = performance.now();
          content += delta;
          reply.textContent = content;
          this.log.scrollTop = this.log.scrollHeight;
        }
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
        show();
      });
      this.messages.push({ role: 'assistant', content });
      reply.dataset.state = 'done';
    } catch (error) {
      if (error.name === 'AbortError') {
        reply.dataset.state = 'stopped';
        if (content) this.messages.push({ role: 'assistant', content });
        else this.messages.pop();
      } else {
        reply.classList.add('error');
        reply.textContent = content ? `${content}\n[${error.message}]` : error.message;
        reply.dataset.state = 'error';
        this.messages.pop();
      }
    } finally {
      this.controller = null;
      this.send.textContent = 'Send';
    }
  }
}
