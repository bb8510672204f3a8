// What the widget keeps in the visitor's browser, per deployment: the guest
// session token and the sign-in tokens in localStorage (so a reload, or
// another tab, continues the same session), whether the panel was open in
// sessionStorage (this tab only). Storage can be unavailable (blocked
// cookies, sandboxed frames): then it lives in memory for this page.

export function storage(deploymentId) {
  const prefix = `switchboard:${deploymentId}:`;
  const memory = new Map();
  const area = (name) => {
    try {
      const s = window[name];
      const probe = `${prefix}probe`;
      s.setItem(probe, '1');
      s.removeItem(probe);
      return s;
    } catch {
      return null;
    }
  };
  const local = area('localStorage');
  const session = area('sessionStorage');

  const read = (s, key) => {
    const raw = s ? s.getItem(prefix + key) : memory.get(key);
    if (raw == null) return null;
    try {
      return JSON.parse(raw);
    } catch {
      return null;
    }
  };
  const write = (s, key, value) => {
    try {
      if (value == null) {
        if (s) s.removeItem(prefix + key);
        else memory.delete(key);
      } else if (s) s.setItem(prefix + key, JSON.stringify(value));
      else memory.set(key, JSON.stringify(value));
    } catch {
      // Quota or privacy settings: the value lasts for this page only.
      memory.set(key, JSON.stringify(value));
    }
  };

  return {
    get: (key) => read(local, key),
    set: (key, value) => write(local, key, value),
    getTab: (key) => read(session, key),
    setTab: (key, value) => write(session, key, value),
    // Another tab changed one of ours.
    onChange(key, fn) {
      window.addEventListener('storage', (e) => {
        if (e.key === prefix + key) fn();
      });
    },
  };
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
