import { it } from 'vitest';
import { ColumnsBuilder, decodeColumnar, encodeColumnar } from '../proto/columnar';
import { simulatedPoints } from '../bench/points';
import { encodeBatches } from '../bench/stages';
import { decodeBatch } from '../proto/codec';
it('prof', async () => {
  const pts = await simulatedPoints(100_000, 200);
  const t = (name: string, f: () => void) => { f(); const s = performance.now(); f(); console.log(name, ((performance.now() - s) * 1000 / pts.length).toFixed(3), 'us/pt'); };
  const b = new ColumnsBuilder(1000);
  t('add', () => { for (let i = 0; i < pts.length; i++) { b.add(pts[i]!); if (b.count === 1000) b.reset(); } });
  const batches: Uint8Array[] = [];
  t('add+encode', () => { batches.length = 0; for (let i = 0; i < pts.length; i++) { b.add(pts[i]!); if (b.count === 1000) { batches.push(encodeColumnar({ gatewayId: 'g', batchSeq: 1, sentAt: 1 }, b.view())); b.reset(); } } });
  t('add+encode brotli', () => { for (let i = 0; i < pts.length; i++) { b.add(pts[i]!); if (b.count === 1000) { encodeColumnar({ gatewayId: 'g', batchSeq: 1, sentAt: 1 }, b.view(), 'brotli'); b.reset(); } } });
  t('add+encode deflate', () => { for (let i = 0; i < pts.length; i++) { b.add(pts[i]!); if (b.count === 1000) { encodeColumnar({ gatewayId: 'g', batchSeq: 1, sentAt: 1 }, b.view(), 'deflate'); b.reset(); } } });
  t('decode v2', () => { for (const x of batches) decodeColumnar(x); });
  const v1 = encodeBatches(pts, 'g');
  t('decode v1', () => { for (const x of v1) decodeBatch(x); });
  console.log(pts[5]);
}, 120000);
