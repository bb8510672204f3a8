// The demo page's script (served at /demo/demo.js; the page allows no
// inline script or style). It checks the deployment's config.json and says
// what is wrong, then does exactly what the pasted snippet (loader.html)
// does: queue calls to `Switchboard` and load the widget.
(function (w, d) {
  var me = d.currentScript;
  var endpoint = me.getAttribute('data-endpoint');
  var deploymentId = me.getAttribute('data-deployment-id');
  var url = me.getAttribute('data-config-url');
  var status = d.getElementById('config-status');
  function problem(text) {
    status.className = 'problem';
    status.textContent = text;
  }
  fetch(url, { cache: 'no-store' })
    .then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    })
    .then(function (c) {
      status.className = 'ok';
      status.textContent = 'config.json answered: configuration version ' + c.version +
        (c.auth && c.auth.enabled ? '; visitors must sign in.' : '; guests may chat.');
    })
    .catch(function (e) {
      problem('The deployment\u2019s config.json (' + url + ') cannot be read (' + e.message +
        '), so the widget does not start. Check that the deployment exists, is Active and names a published ' +
        'configuration version, and that switchboard is reachable at its public URL.');
    });
  w.addEventListener('switchboard:error', function (e) {
    problem('The widget did not start: ' + (e.detail && e.detail.reason) + '.');
  });

  // The snippet's loader.
  var name = 'Switchboard';
  w[name] = w[name] || function () { (w[name].q = w[name].q || []).push(arguments); };
  w[name].o = { deploymentId: deploymentId, endpoint: endpoint };
  var s = d.createElement('script'); s.async = true; s.src = endpoint + '/web-snippet/widget.js';
  d.head.appendChild(s);
})(window, document);
