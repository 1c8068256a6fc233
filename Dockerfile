# Kiln: one image for every role (`api`, `worker`, `runner`, `migrate`); docker-compose.yml picks the
# role with the command. TypeScript runs through tsx, as in development, so there is no build step.
FROM node:20-bookworm-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so code changes reuse this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY config ./config
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY tsconfig.json ./

# Data dirs the named volumes mount over; they inherit this ownership on first use.
RUN mkdir -p /var/lib/kiln /var/lib/kiln-runner /etc/kiln && chown node:node /var/lib/kiln /var/lib/kiln-runner
USER node

EXPOSE 8080
ENTRYPOINT ["node", "bin/kiln.js"]
CMD ["--help"]
