// Vite config of Kiln's web UI: `npm run build:ui` builds ui/ into ui/dist, which `kiln api` and
// `kiln dev` serve under `/`. `npm run dev:ui` serves it with hot reload, proxying /api to a running Kiln.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Charts are the biggest part; keep them in their own chunk, loaded by the statistics page only.
    chunkSizeWarningLimit: 800,
  },
  server: {
    proxy: { '/api': process.env.KILN_API ?? 'http://127.0.0.1:8080' },
  },
});
