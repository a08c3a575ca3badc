#!/usr/bin/python3
"""test_web_page.py QSNAP QSNAPD QSNAP-TEST-VM SOURCE_DIR: the page qsnapd serves, in a real headless browser.

A real QEMU VM with the counter guest (qsnap-test-vm, the C harness's VM behind a line protocol), attached with
the qsnap CLI; qsnapd on TCP with TLS (a self-signed certificate made by openssl here) and a token made by
`qsnapd token create`; chromium driven by selenium through chromedriver. In the browser: a wrong token is
refused, the right one shows the VM; a snapshot made through the form, the guest changed, a revert through
the page, and the guest's RAM counter and disk bytes back as they were (read through the harness's own QMP
monitor); a preview and its undo, checked the same way; an external snapshot deleted through the confirm (a
cancel first); protect, a refused delete shown with the API's message, unprotect; a description full of
markup shown as text with nothing run; schedules and the event log; a revoked token brings the prompt back.
Over plain HTTP: the page's headers (Content-Security-Policy, nosniff, types), and every API route of the
OpenAPI document refused without a token. Then qsnapd on a UNIX socket reached through a TCP forward (as
ssh -L gives it): the page works without a token, and a request naming another host is refused.

$QSNAP_WEB_SCREENSHOT=FILE.png saves the page as it is at the end of the scenario, to look at.

Exit 0 when everything passed; 1 on a failure; 77 (ctest's skip) when a tool is missing - a failure instead
under $QSNAP_REQUIRE_QEMU=1 (scripts/test), as tests/doc/lib.sh does.
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

try:
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported in main(): a skip, or a failure under $QSNAP_REQUIRE_QEMU=1
    pass

HOSTILE = '<img src=x onerror=alert(1)><script>window.pwned=1</script> & "quotes"'
POINT = 'qsnap-before-preview'
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
WAIT_S = 90  # a hang, not speed: a loaded 2-core machine can be slow
LEN = 65536

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def missing(what):
    """WHAT is missing: a skip (exit 77), or a failure under $QSNAP_REQUIRE_QEMU=1."""
    if os.environ.get('QSNAP_REQUIRE_QEMU') == '1':
        print(f'FAIL: {what}, and $QSNAP_REQUIRE_QEMU=1 makes that a failure (scripts/setup installs the tools)')
        sys.exit(1)
    print(f'SKIP: {what}')
    sys.exit(77)


def die_with_parent():
    # PR_SET_PDEATHSIG, SIGKILL: no child outlives the test when ctest kills it
    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    if r.returncode != 0:
        raise AssertionError(f'{" ".join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}')
    return r.stdout


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Vm:
    """qsnap-test-vm: one command a line, one answer a line."""

    def __init__(self, binary):
        self.p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                  preexec_fn=die_with_parent)
        first = self.p.stdout.readline().strip()
        if first.startswith('missing '):
            self.close()
            missing(first[8:])
        if not first.startswith('ready '):
            raise AssertionError(f'qsnap-test-vm: {first or "exited"}')
        _, self.socket, self.dir = first.split(' ', 2)

    def __call__(self, line):
        self.p.stdin.write(line + '\n')
        self.p.stdin.flush()
        answer = self.p.stdout.readline().strip()
        if not answer.startswith('ok'):
            raise AssertionError(f'qsnap-test-vm {line}: {answer or "exited"}')
        return answer[3:]

    def counter(self):
        return int(self('counter'))

    def reads(self, disk, byte):
        return self(f'check {disk} {byte:x} 0 {LEN}') == '1'

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write('quit\n')
                self.p.stdin.flush()
                self.p.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()


class Daemon:
    """A qsnapd of the test's, stopped with SIGTERM (a clean stop exits 0)."""

    def __init__(self, qsnapd, root, log, args):
        self.log = log
        with open(log, 'ab') as f:
            self.p = subprocess.Popen([qsnapd, '--root', root, '--no-scheduler'] + args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=f, preexec_fn=die_with_parent)

    def wait_up(self, probe):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f'qsnapd exited at start:\n{open(self.log).read()}')
            try:
                probe()
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise AssertionError('qsnapd did not answer')

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                rc = self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise AssertionError('qsnapd did not stop on SIGTERM')
            check(rc == 0, f'qsnapd stopped with status {rc}:\n{open(self.log).read()}')


class Forward:
    """127.0.0.1:PORT to a UNIX socket, as `ssh -L PORT:SOCKET` or socat give it: each connection piped both ways."""

    def __init__(self, path):
        self.path = path
        self.lsock = socket.socket()
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            try:
                u.connect(self.path)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()


def http(base, ctx, method, path, token=None, body=None, headers=None):
    """(status, headers, body bytes) of METHOD PATH; errors are answers too."""
    h = dict(headers or {})
    if token:
        h['Authorization'] = f'Bearer {token}'
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h['Content-Type'] = 'application/json'
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def check_headers(base, ctx):
    """The page and its files: types, the policy, nosniff - without a token; nothing else without one."""
    for path, ctype in (('/', 'text/html; charset=utf-8'), ('/web/app.js', 'text/javascript; charset=utf-8'),
                        ('/web/style.css', 'text/css; charset=utf-8'), ('/web/favicon.svg', 'image/svg+xml')):
        st, h, body = http(base, ctx, 'GET', path)
        check(st == 200, f'GET {path} without a token: {st}')
        check(h['Content-Type'] == ctype, f'GET {path}: Content-Type {h["Content-Type"]}')
        check(h['Content-Security-Policy'] == PAGE_CSP, f'GET {path}: CSP {h["Content-Security-Policy"]}')
        check(h['X-Content-Type-Options'] == 'nosniff', f'GET {path}: no nosniff')
        check(len(body) > 0, f'GET {path}: empty')
    # a name not compiled in: 404; what is not the page's route at all needs a token like any other (401)
    for path, want in (('/web/nope.js', 404), ('/web/..%2F..%2Fetc%2Fpasswd', 401), ('/web/index.html/x', 401),
                       ('/web/.hidden', 400), ('/web/', 401), ('/index.html', 401)):
        st, h, _ = http(base, ctx, 'GET', path)
        check(st == want, f'GET {path}: {st}, not {want}')
    st, h, _ = http(base, ctx, 'GET', '/api/vms')
    check(st == 401, f'GET /api/vms without a token: {st}')
    check(h['Content-Security-Policy'].startswith("default-src 'none'"), 'an API reply without its policy')
    check(h['X-Content-Type-Options'] == 'nosniff', 'an API reply without nosniff')


def check_routes_need_token(base, ctx, openapi):
    """Every operation of the OpenAPI document but the page's: 401 without a token and with a wrong one."""
    subst = {'{vm}': 'vm', '{snap}': 's1', '{id}': '1-x', '{name}': 'nightly', '{file}': 'app.js'}
    n = 0
    for template, item in openapi['paths'].items():
        path = template
        for k, v in subst.items():
            path = path.replace(k, v)
        for method in ('get', 'post', 'put', 'delete'):
            if method not in item:
                continue
            public = template in ('/', '/web/{file}')
            for token in (None, 'qs_wrong'):
                st, _, body = http(base, ctx, method.upper(), path, token=token, body={} if method != 'get' else None)
                if public:
                    check(st == 200, f'{method.upper()} {path}: {st} (the page needs no token)')
                else:
                    check(st == 401, f'{method.upper()} {path} with token {token}: {st} {body[:200]!r}')
                    n += 1
    check(n > 60, f'only {n} operations checked')


def check_static(src):
    """The page's own files: no markup built from strings, nothing inline for the policy to forbid."""
    js = open(os.path.join(src, 'web', 'app.js')).read()
    for bad in ('innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function'):
        check(bad not in js, f'app.js uses {bad}')
    html = open(os.path.join(src, 'web', 'index.html')).read()
    check('<script>' not in html and ' style=' not in html and ' onclick=' not in html and ' onload=' not in html,
          'index.html has inline script or style')


class Page:
    def __init__(self, driver):
        from selenium.webdriver.support.ui import WebDriverWait
        self.d = driver
        self.wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def until(self, script, what, *args):
        """Waits until SCRIPT (a JS expression's body) returns something true; returns it."""
        try:
            return self.wait.until(lambda d: d.execute_script(script, *args))
        except Exception as e:
            banner = self.js('return document.getElementById("error-text").textContent')
            raise AssertionError(f'waited {WAIT_S} s for {what} ({type(e).__name__}); error banner: {banner!r}')

    def click(self, selector):
        from selenium.common.exceptions import (ElementClickInterceptedException, ElementNotInteractableException,
                                                NoSuchElementException, StaleElementReferenceException)
        from selenium.webdriver.common.by import By
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                self.d.find_element(By.CSS_SELECTOR, selector).click()
                return
            except (StaleElementReferenceException, ElementClickInterceptedException, ElementNotInteractableException,
                    NoSuchElementException):
                # the list was drawn again under the click (an event, a refresh), or is not there yet: once more
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def type(self, selector, text):
        from selenium.webdriver.common.by import By
        e = self.d.find_element(By.CSS_SELECTOR, selector)
        e.clear()
        e.send_keys(text)

    def visible(self, id_):
        return self.js('const e = document.getElementById(arguments[0]); return e !== null && !e.hidden && '
                       'e.offsetParent !== null', id_)

    def snap_sel(self, name):
        return f'#tree li[data-snapshot="{name}"]'

    def has_snap(self, name):
        return self.js('return document.querySelector(arguments[0]) !== null', self.snap_sel(name))

    def badges(self, name):
        return self.js('const li = document.querySelector(arguments[0]); return li ? [...li.firstElementChild'
                       '.querySelectorAll(".badge")].map(b => b.dataset.badge + ":" + b.textContent) : null',
                       self.snap_sel(name))

    def tasks_done(self, kind, state='succeeded'):
        return self.js('return document.querySelectorAll(arguments[0]).length',
                       f'#tasks li[data-kind="{kind}"][data-state="{state}"]')

    def press(self, selector, confirm=True, run=None):
        """Clicks SELECTOR and answers the confirm dialog it opens (OK or Cancel; RUN: what the VM is to be)."""
        from selenium.webdriver.support.ui import Select
        self.click(selector)
        if confirm is None:
            return
        self.dialog(selector)
        if run:
            Select(self.d.find_element('css selector', '#confirm-run')).select_by_value(run)
        self.click('#confirm-ok' if confirm else '#confirm-cancel')
        self.until('return !document.getElementById("confirm").open', 'the dialog to close')

    def act(self, name, action, confirm=True, run=None):
        """Clicks ACTION on snapshot NAME and answers the confirm dialog (None: it opens none)."""
        self.press(f'{self.snap_sel(name)} > .snap button[data-action="{action}"]', confirm, run)

    def dialog(self, selector):
        """Waits for the confirm dialog that clicking SELECTOR opens. A click the browser delivered while the page
        was drawing that part anew can reach no button: then (the dialog still closed after a while) once more."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                WebDriverWait(self.d, 5, poll_frequency=0.1).until(
                    lambda d: d.execute_script('return document.getElementById("confirm").open'))
                return
            except TimeoutException:
                if time.monotonic() > deadline:
                    raise AssertionError(f'no confirm dialog after clicking {selector}')
                print(f'note: no dialog 5 s after clicking {selector}: clicking again', flush=True)
                try:
                    # once: the dialog opening meanwhile makes this click land on its backdrop, harmlessly
                    self.d.find_element('css selector', selector).click()
                except WebDriverException:
                    pass

    def task(self, kind, before, do):
        """Runs DO, then waits until one more task of KIND succeeded than BEFORE; the banner must stay empty."""
        do()
        self.until(f'return document.querySelectorAll(\'#tasks li[data-kind="{kind}"][data-state="succeeded"]\')'
                   f'.length > {before}', f'a {kind} task to succeed')

    def no_alert(self):
        from selenium.common.exceptions import NoAlertPresentException
        try:
            a = self.d.switch_to.alert
            text = a.text
            a.dismiss()
            raise AssertionError(f'an alert ran: {text!r}')
        except NoAlertPresentException:
            pass
        check(self.js('return window.pwned === undefined'), 'a script from a description ran')


def browser_session(page, base, token, vm, qsnapd, root, api):
    """The whole scenario through the page; guest-side checks through VM."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    d = page.d
    d.get(base + '/')
    page.until('return !document.getElementById("login").hidden', 'the token prompt')
    check(not page.visible('app'), 'the app is shown without a token')

    # a wrong token: refused with the API's words, the prompt stays
    page.type('#token', 'qs_not-a-token')
    page.click('#login-submit')
    page.until('return !document.getElementById("login-message").hidden', 'the refusal')
    msg = page.js('return document.getElementById("login-message").textContent')
    check('a valid bearer token is required' in msg, f'refusal text: {msg!r}')
    check(page.js('return sessionStorage.getItem("qsnap.token")') is None, 'a refused token was kept')

    # the right one: the VM, selected, with its schedule
    page.type('#token', token)
    page.click('#login-submit')
    page.until('return document.querySelector(\'#vms tr[data-vm="vm"]\') !== null', 'the VM in the list')
    check(page.js('return sessionStorage.getItem("qsnap.token")') == token, 'the token is not in sessionStorage')
    check(page.js('return localStorage.length === 0 && document.cookie === ""'), 'the token went elsewhere too')
    row = lambda f: page.js(f'return document.querySelector(\'#vms tr[data-vm="vm"] [data-field="{f}"]\')'
                            '.textContent')
    check(row('state') == 'running' and row('count') == '0', f'VM row: {row("state")} {row("count")}')
    page.until('return document.querySelector(\'#schedules tr[data-schedule="nightly"]\') !== null', 'the schedule')
    sched = page.js('return document.querySelector(\'#schedules tr[data-schedule="nightly"]\').textContent')
    check('@daily' in sched and 'daily 7' in sched, f'schedule row: {sched!r}')

    # s1 of the stopped guest, 0xaa on vdb, through the form; its description is markup, shown as text
    vm('write vdb aa 0 65536')
    vm('stop')
    c_snap = vm.counter()
    page.type('#create-name', 's1')
    page.type('#create-description', HOSTILE)
    page.task('create', 0, lambda: page.click('#create-submit'))
    page.until(f'return document.querySelector(\'{page.snap_sel("s1")}\') !== null', 's1 in the tree')
    desc = page.js(f'return document.querySelector(\'{page.snap_sel("s1")} .desc\').textContent')
    check(desc == HOSTILE, f'description shown as {desc!r}')
    check(page.js('return document.querySelectorAll("img, script:not([src])").length') == 0,
          'the description became elements')
    page.no_alert()
    b = page.badges('s1')
    check('current:current' in b and 'location:internal' in b and 'memory:memory' in b, f's1 badges: {b}')
    page.until('return document.querySelector(\'#vms tr[data-vm="vm"] [data-field="count"]\').textContent === "1"',
               'the snapshot count')
    check(row('current') == 's1', f'current: {row("current")}')

    # the guest moves on and writes 0xbb; a revert through the page brings back s1's RAM and disk exactly
    vm('cont')
    vm('advancing')
    vm('write vdb bb 0 65536')
    check(vm.counter() != c_snap, 'the counter did not move')
    page.task('restore', 0, lambda: page.act('s1', 'revert'))
    check(vm('status') == 'paused', 'not paused as s1 was')
    check(vm.counter() == c_snap, 'the RAM counter is not s1\'s after the revert')
    check(vm.reads('vdb', 0xaa), 'vdb does not read 0xaa after the revert')
    page.until('return document.querySelector(\'#vms tr[data-vm="vm"] [data-field="state"]\').textContent'
               ' === "paused"', 'the VM shown paused')

    # preview s1 from a later state, then undo: back to that state exactly
    vm('cont')
    vm('advancing')
    vm('write vdb cc 0 65536')
    vm('stop')
    c_now = vm.counter()
    page.task('preview', 0, lambda: page.act('s1', 'preview'))
    page.until('return !document.getElementById("preview-bar").hidden', 'the preview bar')
    check(page.js('return document.getElementById("preview-name").textContent') == 's1', 'preview bar name')
    page.until(f'return document.querySelector(\'{page.snap_sel(POINT)}\') !== null', 'the kept state in the tree')
    check('in_preview:in preview' in page.badges('s1'), f's1 badges in preview: {page.badges("s1")}')
    check(vm.counter() == c_snap and vm.reads('vdb', 0xaa), 'the preview did not run s1')
    vm('cont')
    vm('write vdb dd 0 65536')

    page.task('undo', 0, lambda: page.press('#preview-undo'))
    page.until('return document.getElementById("preview-bar").hidden', 'the preview bar to go')
    page.until(f'return document.querySelector(\'{page.snap_sel(POINT)}\') === null', 'the kept state to go')
    check(vm.counter() == c_now, 'the undo did not return to the RAM counter before the preview')
    check(vm.reads('vdb', 0xcc), 'the undo did not return to the disk before the preview')

    # preview s1 again, running, and commit: the VM stays on s1's state, the kept one goes
    page.task('preview', 1, lambda: page.act('s1', 'preview', run='start'))
    check(vm('status') == 'running', 'the preview with "running" did not run the VM')
    vm('write vdb ee 0 65536')

    page.task('commit', 0, lambda: page.press('#preview-commit'))
    page.until('return document.getElementById("preview-bar").hidden', 'the preview bar to go after the commit')
    page.until(f'return document.querySelector(\'{page.snap_sel(POINT)}\') === null', 'the kept state to go')
    check(vm('status') == 'running' and vm.reads('vdb', 0xee), 'the commit did not keep the previewed VM as it ran')
    vm('stop')

    # an external disk-only snapshot, under the current one; its delete: cancelled once, then done (a merge)
    page.type('#create-name', 's2')
    page.type('#create-description', 'overlay')
    Select(d.find_element(By.CSS_SELECTOR, '#create-kind')).select_by_value('disk-only')
    page.task('create', 1, lambda: page.click('#create-submit'))
    page.until(f'return document.querySelector(\'{page.snap_sel("s2")}\') !== null', 's2 in the tree')
    b = page.badges('s2')
    check('location:external' in b and 'memory:disks only' in b, f's2 badges: {b}')
    parent = api('GET', '/api/vms/vm/snapshots/s2')['parent']
    check(parent is not None and page.js('return document.querySelector(arguments[0]) !== null',
                                         f'{page.snap_sel(parent)} > ul > li[data-snapshot="s2"]'),
          f's2 is not drawn under its parent {parent}')
    page.act('s2', 'delete', confirm=False)
    check(page.has_snap('s2') and page.tasks_done('delete') == 0, 'a cancelled delete deleted')
    page.task('delete', 0, lambda: page.act('s2', 'delete'))
    page.until(f'return document.querySelector(\'{page.snap_sel("s2")}\') === null', 's2 to leave the tree')
    check(vm.reads('vdb', 0xee), 'vdb changed through the external snapshot\'s delete')

    # a live snapshot by pre-copy of the running VM: its RAM in a memory file, the VM running on; its delete
    vm('cont')
    page.type('#create-name', 's3')
    Select(d.find_element(By.CSS_SELECTOR, '#create-kind')).select_by_value('precopy')
    page.task('create', 2, lambda: page.click('#create-submit'))
    page.until(f'return document.querySelector(\'{page.snap_sel("s3")}\') !== null', 's3 in the tree')
    s3 = api('GET', '/api/vms/vm/snapshots/s3')
    check(s3['persist_memorystate'] is True and s3['state'] == 'running' and s3['location'] == 'external',
          f's3: {s3}')
    check(vm('status') == 'running', 'the VM did not run on after the live snapshot')
    page.task('delete', 1, lambda: page.act('s3', 'delete'))
    page.until(f'return document.querySelector(\'{page.snap_sel("s3")}\') === null', 's3 to leave the tree')
    vm('stop')
    check(vm.reads('vdb', 0xee), 'vdb changed through the live snapshot and its delete')
    check([s['name'] for s in api('GET', '/api/vms/vm/snapshots')['snapshot']] == ['s1'], 'snapshots left')

    # protect s1: its delete is refused, the page shows the API's message; unprotect
    page.act('s1', 'protect', confirm=None)
    page.until(f'return document.querySelector(\'{page.snap_sel("s1")} .badge.protected\') !== null',
               'the protected badge')
    page.act('s1', 'delete')
    page.until('return !document.getElementById("error").hidden', 'the refusal of the delete')
    shown = page.js('return document.getElementById("error-text").textContent')
    failed = [t for t in api('GET', '/api/tasks')['task'] if t['kind'] == 'delete' and t['state'] == 'failed']
    check(failed and shown == failed[0]['error']['message'], f'shown {shown!r}, the API said {failed}')
    check('protected' in shown, f'refusal: {shown!r}')
    check(page.has_snap('s1'), 's1 was deleted while protected')
    page.act('s1', 'unprotect', confirm=None)
    page.until(f'return document.querySelector(\'{page.snap_sel("s1")} .badge.protected\') === null',
               'the protected badge to go')
    check(api('GET', '/api/vms/vm/snapshots/s1')['protected'] is False, 's1 still protected')

    # the event log: the operations, by the token's name
    page.until('return document.querySelector(\'#events tr[data-op="create"]\') !== null', 'events')
    ev = page.js('return [...document.querySelectorAll("#events tbody tr")].map(r => r.textContent).join("\\n")')
    check('web' in ev and 'revert' in ev and 'protect' in ev, f'events shown: {ev!r}')

    page.no_alert()
    if os.environ.get('QSNAP_WEB_SCREENSHOT'):
        d.save_screenshot(os.environ['QSNAP_WEB_SCREENSHOT'])
    # nothing refused by the policy, no script error, no failed load but the refused tokens' 401s
    logs = [e['message'] for e in d.get_log('browser')]
    bad = [m for m in logs if 'Content Security Policy' in m or 'Refused to' in m or 'Uncaught' in m or
           ('Failed to load resource' in m and 'status of 401' not in m)]
    check(not bad, f'the browser console: {bad}')
    check(any('status of 401' in m for m in logs), f'the console was not read (no 401 of the wrong token): {logs}')

    # the token revoked on the server: the next request brings the prompt back
    run([qsnapd, '--root', root, 'token', 'revoke', 'web'])
    # the page's own refresh (its timer) may meet the revoke first and show the prompt before the click: checked and
    # clicked in one script, in the page's own turn
    page.js('const b = document.getElementById("refresh"); if (!b.hidden) b.click();')
    page.until('return !document.getElementById("login").hidden', 'the prompt after the revoke')
    check(page.js('return sessionStorage.getItem("qsnap.token")') is None, 'a revoked token was kept')
    check('refused' in page.js('return document.getElementById("login-message").textContent'), 'no refusal shown')


def local_session(page, url):
    """The page through a forwarded UNIX socket: no token asked, the VM and its snapshot shown."""
    page.d.get(url + '/')
    page.until('return document.querySelector(\'#tree li[data-snapshot="s1"]\') !== null', 's1 over the socket')
    check(not page.visible('login'), 'a token was asked for over the UNIX socket')
    check(not page.visible('signout'), '"Forget token" shown without a token')
    check('no token needed' in page.js('return document.getElementById("server").textContent'), 'server line')


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    qsnap, qsnapd, vm_helper, src = sys.argv[1:]
    chromium = shutil.which('chromium')
    chromedriver = shutil.which('chromedriver')
    if not chromium or not chromedriver:
        missing('chromium or chromedriver is not in PATH (packages chromium, chromium-driver)')
    if not shutil.which('openssl'):
        missing('openssl is not in PATH (package openssl)')
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as ChromeService
    except ImportError:
        missing('the selenium module is missing (package python3-selenium)')
    openapi = json.load(open(os.path.join(src, 'service', 'openapi.json')))
    check_static(src)

    tmp = tempfile.mkdtemp(prefix='qsnap-web-')
    vm = daemon = local = fwd = driver = None
    ok = False
    try:
        vm = Vm(vm_helper)
        vm('advancing')
        root = os.path.join(tmp, 'root')
        run([qsnap, '--root', root, 'attach', 'vm', '--qmp', vm.socket])
        run([qsnap, '--root', root, 'schedule-set', 'vm', 'nightly', '--cron', '@daily', '--keep-daily', '7'])
        cert, key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')
        run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
             '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
        token = run([qsnapd, '--root', root, 'token', 'create', 'web']).strip()
        port = free_port()
        base = f'https://127.0.0.1:{port}'
        ctx = ssl.create_default_context(cafile=cert)
        daemon = Daemon(qsnapd, root, os.path.join(tmp, 'qsnapd.log'),
                        ['--listen', f'tcp:127.0.0.1:{port}', '--tls-cert', cert, '--tls-key', key])
        daemon.wait_up(lambda: http(base, ctx, 'GET', '/'))

        def api(method, path, body=None):
            st, _, data = http(base, ctx, method, path, token=token, body=body)
            check(200 <= st < 300, f'{method} {path}: {st} {data[:300]!r}')
            return json.loads(data)

        check_headers(base, ctx)
        check_routes_need_token(base, ctx, openapi)
        # a valid token does not make a request another site's page sent acceptable
        for h in ({'Sec-Fetch-Site': 'cross-site'}, {'Sec-Fetch-Site': 'same-site'},
                  {'Origin': 'https://attacker.example'}, {'Origin': 'null'}):
            st, _, body = http(base, ctx, 'POST', '/api/vms/vm/undosnapshot', token=token, headers=h)
            check(st == 403, f'POST with {h}: {st} {body[:200]!r}')
        st, _, _ = http(base, ctx, 'GET', '/api/vms', token=token,
                        headers={'Sec-Fetch-Site': 'same-origin', 'Origin': f'https://127.0.0.1:{port}'})
        check(st == 200, f'a same-origin request: {st}')

        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for a in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run',
                  '--ignore-certificate-errors', '--disable-extensions', '--disable-background-networking',
                  '--window-size=1280,1000', f'--user-data-dir={tmp}/chromium'):
            opts.add_argument(a)
        opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        service = ChromeService(executable_path=chromedriver, log_path=os.path.join(tmp, 'chromedriver.log'),
                                popen_kw={'preexec_fn': die_with_parent})
        driver = webdriver.Chrome(service=service, options=opts)
        page = Page(driver)
        browser_session(page, base, token, vm, qsnapd, root, api)

        # the UNIX socket, forwarded to a local port as ssh -L does: no token; another Host is refused
        sock = os.path.join(tmp, 'api.sock')
        local = Daemon(qsnapd, root, os.path.join(tmp, 'qsnapd-unix.log'), ['--listen', f'unix:{sock}'])
        fwd = Forward(sock)
        url = f'http://localhost:{fwd.port}'
        local.wait_up(lambda: http(url, None, 'GET', '/'))
        local_session(page, url)
        for host in ('attacker.example', 'localhost.attacker.example', '127.0.0.1.attacker.example', '[::2]'):
            st, _, body = http(url, None, 'GET', '/api/vms', headers={'Host': f'{host}:{fwd.port}'})
            check(st == 403 and b'not this machine' in body, f'Host {host}: {st} {body[:200]!r}')
        for host in ('localhost', 'LOCALHOST', 'web.localhost', '127.0.0.1', '127.1.2.3', '[::1]'):
            st, _, body = http(url, None, 'GET', '/api/vms', headers={'Host': f'{host}:{fwd.port}'})
            check(st == 200, f'Host {host}: {st} {body[:200]!r}')
        st, _, body = http(url, None, 'POST', '/api/vms/vm/undosnapshot', headers={'Origin': 'http://attacker.example'})
        check(st == 403, f'a POST from another origin: {st} {body[:200]!r}')
        driver.quit()
        driver = None
        local.stop()
        daemon.stop()
        ok = True
    except Exception as e:  # an assertion, or selenium's word on the page
        print(f'FAIL: {type(e).__name__}: {e}', flush=True)
        traceback.print_exc(file=sys.stdout)
    finally:
        if driver:
            try:
                driver.quit()
            except Exception:
                pass
        if fwd:
            fwd.close()
        for dmn in (local, daemon):
            if dmn and dmn.p.poll() is None:
                dmn.p.kill()
                dmn.p.wait()
        if vm:
            vm.close()
        if not ok:
            for name, tail in (('qsnapd.log', 8000), ('qsnapd-unix.log', 3000), ('chromedriver.log', 3000)):
                p = os.path.join(tmp, name)
                if os.path.exists(p):
                    print(f'---- {name} (end)')
                    print(open(p, errors='replace').read()[-tail:])
        if not os.environ.get('QSNAP_KEEP_TMP'):
            shutil.rmtree(tmp, ignore_errors=True)
    print(f'test_web_page: {checks} checks passed' if ok else f'test_web_page: failed after {checks} checks')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
