import { defineConfig } from 'vite';

// The console is served by the gateway under /console/ and embedded from
// ../dist (go:embed). `npm run build` writes it; the built files are
// committed so that a Go build needs no npm.
export default defineConfig({
  base: '/console/',
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
});
