# Kiln: one image for every role (`api`, `worker`, `runner`, `migrate`); docker-compose.yml picks the role with the
# command. The image runs the production build (`npm run build`, scripts/build.ts): compiled JavaScript and a
# workflow bundle made at build time, so no TypeScript compiler or bundler runs when a container starts.

# --- build: the sources compiled (and type-checked) into dist/, with the workflow bundle -----------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
RUN node --import tsx scripts/build.ts
# The web UI (ui/ → ui/dist), built with the dev dependencies this stage has.
COPY scripts/lib.sh scripts/build-ui.sh ./scripts/
COPY ui ./ui
RUN bash scripts/build-ui.sh --force

# --- the image: production dependencies, the build, the CLI entry point and the shipped config -----------------
FROM node:20-bookworm-slim

ENV NODE_ENV=production
# bin/kiln.js runs dist/ (there are no sources in the image to fall back to).
ENV KILN_RUN_FROM=dist
WORKDIR /app

# Dependencies first, so code changes reuse this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY config ./config
COPY --from=build /app/dist ./dist
COPY --from=build /app/ui/dist ./ui/dist

# Data dirs the named volumes mount over; they inherit this ownership on first use.
RUN mkdir -p /var/lib/kiln /var/lib/kiln-runner /etc/kiln && chown node:node /var/lib/kiln /var/lib/kiln-runner
USER node

EXPOSE 8080
ENTRYPOINT ["node", "bin/kiln.js"]
CMD ["--help"]
