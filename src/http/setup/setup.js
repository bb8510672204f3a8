// The first-run page: sends the staff integration to POST /api/v2/setup
// with the bootstrap token typed in (kept in no storage), then offers the
// sign-in that makes the first admin.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('setup');
  const message = document.getElementById('message');
  const next = document.getElementById('next');
  document.getElementById('callback').textContent = `${window.location.origin}/auth/callback`;

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      name: data.get('name'),
      issuer: data.get('issuer'),
      clientId: data.get('clientId'),
    };
    const secret = data.get('clientSecret');
    if (secret) body.clientSecret = secret;
    message.textContent = 'Saving…';
    let response;
    try {
      response = await fetch('/api/v2/setup', {
        method: 'POST',
        headers: {
          authorization: `Bearer ${data.get('token')}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify(body),
      });
    } catch (error) {
      message.textContent = `The server did not answer: ${error.message}`;
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      form.hidden = true;
      message.textContent = 'Staff sign-in is set up. The next person to sign in becomes the admin.';
      document.getElementById('sign-in').href = answer.signIn;
      next.hidden = false;
    } else if (answer.code === 'already_set_up') {
      form.hidden = true;
      message.textContent = 'Setup is done already: sign in to the console.';
      document.getElementById('sign-in').textContent = 'Sign in';
      next.hidden = false;
    } else {
      message.textContent = `${answer.message || response.statusText} (${answer.code || response.status})`;
    }
  });
});
