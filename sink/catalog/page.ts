import { existsSync, readFileSync } from 'node:fs';
import { send, type Route } from '../../deploy/runtime/http';

// The product page: an HTML shell and one script (dist/catalog-page.js, built from
// page/client.ts with uPlot inside), which fetches /catalog/page.json. The shell and the
// script hold no data: with tokens they are what anyone may load, and the script sends
// the token given in the page's fragment (/#token=...) with every request for data.

/** Where the built script is: beside this module once bundled into dist/, or in dist/ when run from source (tests). */
const BUNDLE_CANDIDATES = [new URL('./catalog-page.js', import.meta.url), new URL('../../dist/catalog-page.js', import.meta.url)];

export const PAGE_SCRIPT_PATH = '/assets/catalog-page.js';
export const PAGE_DATA_PATH = '/catalog/page.json';

/** The script, read once, or why there is none: a checkout never built still serves everything else. */
export function readPageScript(): Buffer | string {
  const found = BUNDLE_CANDIDATES.find((u) => existsSync(u));
  return found ? readFileSync(found) : "the product page's script is not built (dist/catalog-page.js): run 'npm run build'";
}

const shell = (preload: boolean) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">${preload ? `\n<link rel="preload" href="${PAGE_DATA_PATH}" as="fetch" crossorigin="anonymous">` : ''}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>drones: the data product</title>
<link rel="icon" href="data:,">
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 1.5rem; color: #222; }
h1 small { font-weight: normal; color: #777; font-size: 0.55em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { text-align: left; padding: 0.2rem 0.6rem; border-bottom: 1px solid #eee; vertical-align: top; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
.muted { color: #777; }
.bad, tr.bad td { color: #b00; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.figure { border: 1px solid #ddd; border-radius: 4px; padding: 0.4rem 0.8rem; }
.figure .value { display: block; font-size: 1.4em; font-weight: 600; }
.figure .label { color: #777; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart { margin: 0; }
button.on { font-weight: bold; }
.row { display: flex; gap: 1rem; align-items: flex-start; flex-wrap: wrap; }
#tracks-plot { border: 1px solid #ddd; background: #fcfcfc; }
.scroll { overflow-x: auto; }
.lineage { display: flex; gap: 1rem; align-items: center; }
.lineage .box { border: 1px solid #aaa; border-radius: 4px; padding: 0.4rem 0.8rem; }
</style>
</head>
<body>
<main id="app"><p>loading the catalog…</p></main>
<script src="${PAGE_SCRIPT_PATH}"></script>
</body>
</html>
`;

/**
 * What the page may load: only this server. uPlot's stylesheet is injected as a style
 * element, hence 'unsafe-inline' for styles (never for scripts).
 */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/**
 * The page's shell and script: public, since they hold no data. Without tokens the shell
 * has the browser fetch the page's data while it loads the script: the first view comes
 * sooner by the script's load and start. With tokens only the script can ask for it.
 */
export function pageRoutes(script: Buffer | string, tokens: boolean): Route[] {
  const html = shell(!tokens);
  return [
    {
      method: 'GET',
      path: '/',
      handle(_req, res) {
        if (typeof script === 'string') {
          send(res, 503, { error: script });
          return;
        }
        res.setHeader('Content-Security-Policy', CSP);
        send(res, 200, html, 'text/html; charset=utf-8');
      },
    },
    {
      method: 'GET',
      path: PAGE_SCRIPT_PATH,
      handle(_req, res) {
        if (typeof script === 'string') {
          send(res, 503, { error: script });
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Content-Length': script.length, 'Cache-Control': 'no-cache' });
        res.end(script);
      },
    },
  ];
}
