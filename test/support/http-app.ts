import type { INestApplication, ModuleMetadata } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { get as httpGet, request as httpRequest, type Agent, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export type AdapterName = 'express' | 'fastify';
export const ADAPTERS: AdapterName[] = ['express', 'fastify'];

/** Builds and initialises a Nest HTTP application on the given platform; `configure` runs before its init. */
export async function createHttpApp(
  metadata: ModuleMetadata,
  adapter: AdapterName,
  configure?: (app: INestApplication) => void,
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const app = moduleRef.createNestApplication(adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), {
    logger: false,
  });
  configure?.(app);
  await app.init();
  if (adapter === 'fastify') await app.getHttpAdapter().getInstance().ready();
  return app;
}

/**
 * Sends GET `path` to `app` (made to listen on a free port of 127.0.0.1 if it
 * does not yet) on a connection of its own; `hangUp()` closes it before the
 * response comes, as a client that gives up would.
 */
export async function requestToHangUp(app: INestApplication, path: string): Promise<{ hangUp: () => void }> {
  const request = httpRequest({ host: '127.0.0.1', port: await listeningPort(app), path });
  request.on('error', () => undefined);
  request.end();
  return { hangUp: () => request.destroy() };
}

/**
 * GETs `path` of `app` (made to listen as above) on a keep-alive connection
 * of `agent` and resolves with the body; the connection stays open.
 */
export async function getKeptAlive(app: INestApplication, agent: Agent, path: string): Promise<string> {
  const port = await listeningPort(app);
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path, agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/**
 * GETs `path` of `app` (made to listen as above) and stops reading once the
 * response's headers are in, as a slow client would: a body larger than the
 * socket buffers then stays partly unsent. `destroy()` hangs up.
 */
export async function getAndStopReading(app: INestApplication, path: string): Promise<{ response: IncomingMessage; destroy: () => void }> {
  const port = await listeningPort(app);
  return new Promise((resolve, reject) => {
    const request = httpGet({ host: '127.0.0.1', port, path }, (response) => {
      response.pause();
      resolve({ response, destroy: () => request.destroy() });
    });
    request.on('error', reject);
  });
}

/**
 * GETs `path` of `app` (made to listen as above) and hands over each chunk
 * of the body as it comes (`next()`), for a test that acts between them.
 */
export async function getChunks(app: INestApplication, path: string): Promise<{ next: () => Promise<string | undefined> }> {
  const port = await listeningPort(app);
  const response = await new Promise<IncomingMessage>((resolve, reject) => httpGet({ host: '127.0.0.1', port, path }, resolve).on('error', reject));
  response.setEncoding('utf8');
  const chunks = response[Symbol.asyncIterator]() as AsyncIterator<string>;
  return { next: async () => (await chunks.next()).value };
}

/** The port `app` listens on, on 127.0.0.1, after making it listen on a free one if it does not yet. */
export async function listeningPort(app: INestApplication): Promise<number> {
  if (!app.getHttpServer().listening) await app.listen(0, '127.0.0.1');
  return (app.getHttpServer().address() as AddressInfo).port;
}
