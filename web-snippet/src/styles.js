// The widget's stylesheet, inside its shadow root so that neither the host
// page's CSS nor ours leaks across. --sb-primary and --sb-on-primary come
// from the deployment's messenger.styles.primaryColor.

export const STYLES = `
:host{all:initial}
*{box-sizing:border-box}
.root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330}
button{font:inherit;cursor:pointer}
button:focus-visible,textarea:focus-visible,.log:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px;box-shadow:0 0 0 5px #fff}
.launcher{width:60px;height:60px;border-radius:50%;border:0;background:var(--sb-primary);color:var(--sb-on-primary);box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center;position:relative;margin-left:auto}
.launcher svg{width:28px;height:28px;fill:currentColor}
.badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#c62828;color:#fff;font-size:12px;line-height:20px;font-weight:600}
.panel{position:absolute;right:0;bottom:76px;width:min(370px,calc(100vw - 40px));height:min(560px,calc(100vh - 120px));background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.28);display:flex;flex-direction:column;overflow:hidden}
[hidden]{display:none!important}
header{background:var(--sb-primary);color:var(--sb-on-primary);padding:12px 14px;display:flex;align-items:center;gap:8px}
header h2{font-size:16px;margin:0;flex:1}
header .state{font-size:12px;opacity:.9}
header button{background:transparent;border:1px solid currentColor;color:inherit;border-radius:6px;padding:2px 8px}
header .close{border:0;font-size:22px;line-height:1;padding:2px 6px}
.notice{margin:8px 10px 0;padding:8px 10px;border-radius:8px;background:#fff4d6;border:1px solid #e9c46a;font-size:13px}
.notice button,.gate button,.readonly button{margin-top:6px;background:var(--sb-primary);color:var(--sb-on-primary);border:0;border-radius:6px;padding:6px 12px}
.log{list-style:none;margin:0;padding:12px;flex:1;overflow-y:auto;display:flex;flex-direction:column;gap:8px;background:#f6f7f9}
.msg{max-width:80%;padding:8px 11px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}
.msg.in{align-self:flex-end;background:var(--sb-primary);color:var(--sb-on-primary);border-bottom-right-radius:4px}
.msg.out{align-self:flex-start;background:#fff;border:1px solid #dde1e7;border-bottom-left-radius:4px}
.msg .who{display:block;font-size:12px;font-weight:600;color:#4b5565}
.msg .meta{display:block;font-size:11px;opacity:.8;margin-top:2px;text-align:right}
.msg.rich{max-width:100%;align-self:stretch}
.quick{display:flex;flex-wrap:wrap;gap:6px;margin-top:8px;white-space:normal}
.quick button,.card .actions>*{background:#fff;color:#1d2330;border:1px solid var(--sb-primary);border-radius:16px;padding:4px 12px;text-decoration:none;font-size:13px}
.quick button:disabled{opacity:.55;cursor:default}
.quick button.chosen{opacity:1;background:var(--sb-primary);color:var(--sb-on-primary)}
.card{border:1px solid #dde1e7;border-radius:10px;overflow:hidden;margin-top:8px;background:#fff;white-space:normal}
.card img{display:block;width:100%;max-height:140px;object-fit:cover}
.card .title{font-weight:600;padding:8px 10px 0}
.card p{margin:4px 10px 0;color:#4b5565}
.card .actions{display:flex;flex-direction:column;gap:6px;padding:8px 10px 10px}
.card .actions>*{border-radius:8px;text-align:center;display:block}
.card a{color:inherit}
.carousel{list-style:none;margin:0;padding:0 0 4px;display:flex;gap:8px;overflow-x:auto;scroll-snap-type:x mandatory}
.carousel li{flex:0 0 78%;scroll-snap-align:start}
.carousel:focus-visible,.card a:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px}
.msg.failed{background:#fdecea;color:#8a1c12;border:1px solid #e57373}
.event{align-self:center;font-size:12px;color:#4b5565;text-align:center}
.event.divider{border-top:1px solid #d0d5dc;width:100%;padding-top:6px}
.typing{padding:4px 14px;font-size:12px;color:#4b5565;font-style:italic;background:#f6f7f9}
.gate,.readonly{padding:12px 14px;border-top:1px solid #e3e6ea;background:#fff}
.gate p,.readonly p{margin:0}
.gate .error{color:#b3261e;margin-top:6px}
form{display:flex;gap:8px;padding:10px;border-top:1px solid #e3e6ea;background:#fff}
textarea{flex:1;resize:none;border:1px solid #b8bfc9;border-radius:8px;padding:8px;font:inherit;min-height:40px;max-height:120px}
textarea:disabled{background:#eef0f3}
form button{background:var(--sb-primary);color:var(--sb-on-primary);border:0;border-radius:8px;padding:0 14px}
form button:disabled{opacity:.5;cursor:not-allowed}
form .attach{background:transparent;color:#4b5565;border:1px solid #b8bfc9;padding:0 8px;display:grid;place-items:center}
form .attach svg{width:20px;height:20px;fill:currentColor}
.msg .file{display:block;margin-top:6px;color:inherit;white-space:normal}
.msg .file.image img{display:block;max-width:100%;max-height:180px;min-width:48px;min-height:48px;object-fit:contain;border-radius:8px;background:#fff}
.msg progress{display:block;width:100%;margin-top:6px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
@media (max-width:480px){.root{right:10px;bottom:10px}.panel{width:calc(100vw - 20px);height:calc(100vh - 100px)}}
@media (prefers-reduced-motion:no-preference){.panel{animation:sb-in .15s ease-out}@keyframes sb-in{from{opacity:0;transform:translateY(8px)}}}
`;
