import { Sse, UseInterceptors } from '@nestjs/common';

type MetadataKey = string | symbol;
type MethodDecorator = (target: object, key: string | symbol, descriptor: PropertyDescriptor) => unknown;

/**
 * The metadata keys Nest's decorators write on the handlers the module gives
 * interceptors to. Nest exports none of them from a package's entry: they are
 * learned by applying the public decorators to a probe and seeing which key
 * each wrote, so they stay right whatever Nest names them.
 */
export interface HandlerMetadataKeys {
  /** Where `@UseInterceptors()` lists a handler's interceptors. */
  readonly interceptors: MetadataKey;
  /** Marks an `@Sse()` handler. */
  readonly sse: MetadataKey;
  /** Mark a handler of `@MessagePattern()` or `@EventPattern()`; none without @nestjs/microservices. */
  readonly patterns: readonly MetadataKey[];
  /** Marks a `@WebSocketGateway()` class; undefined without @nestjs/websockets. */
  readonly gateway?: MetadataKey;
  /** Marks a `@SubscribeMessage()` handler of a gateway; undefined without @nestjs/websockets. */
  readonly messageMapping?: MetadataKey;
}

/** Provider token of the keys, learned once per process. */
export const HANDLER_METADATA_KEYS = Symbol('nestjs-pg-pool:handlerMetadataKeys');

const PROBE_INTERCEPTOR = {
  intercept(): never {
    throw new Error('nestjs-pg-pool: the probe interceptor is never used');
  },
};
const PROBE_PATTERN = 'nestjs-pg-pool:probe';

let learned: Promise<HandlerMetadataKeys> | undefined;

/**
 * The keys, learned on first use. @nestjs/microservices and
 * @nestjs/websockets are optional: where one is not installed, its handlers
 * cannot exist either. A decorator whose key cannot be told apart fails the
 * application's start: its handlers would otherwise silently go unscoped.
 */
export function handlerMetadataKeys(): Promise<HandlerMetadataKeys> {
  learned ??= learnKeys();
  return learned;
}

async function learnKeys(): Promise<HandlerMetadataKeys> {
  const [microservices, websockets] = await Promise.all([
    importIfInstalled(() => import('@nestjs/microservices')),
    importIfInstalled(() => import('@nestjs/websockets')),
  ]);
  const isProbeInterceptor = (value: unknown): boolean => Array.isArray(value) && value.includes(PROBE_INTERCEPTOR);
  const isProbePattern = (value: unknown): boolean => Array.isArray(value) && value.includes(PROBE_PATTERN);
  const isTrue = (value: unknown): boolean => value === true;
  return {
    interceptors: methodKey('@UseInterceptors()', UseInterceptors(PROBE_INTERCEPTOR), isProbeInterceptor),
    sse: methodKey('@Sse()', Sse(), isTrue),
    patterns: microservices
      ? [
          ...new Set([
            methodKey('@MessagePattern()', microservices.MessagePattern(PROBE_PATTERN), isProbePattern),
            methodKey('@EventPattern()', microservices.EventPattern(PROBE_PATTERN), isProbePattern),
          ]),
        ]
      : [],
    ...(websockets && {
      gateway: classKey('@WebSocketGateway()', websockets.WebSocketGateway(), isTrue),
      messageMapping: methodKey('@SubscribeMessage()', websockets.SubscribeMessage(PROBE_PATTERN), isTrue),
    }),
  };
}

async function importIfInstalled<T>(load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

/** The one key `decorator` writes on a method's function with a value `isMark` recognises. */
function methodKey(name: string, decorator: MethodDecorator, isMark: (value: unknown) => boolean): MetadataKey {
  const probe = { handler(): void {} };
  const descriptor = Object.getOwnPropertyDescriptor(probe, 'handler')!;
  decorator(probe, 'handler', descriptor);
  return markedKey(name, descriptor.value as object, isMark);
}

/** The one key `decorator` writes on a class with a value `isMark` recognises. */
function classKey(name: string, decorator: (target: new () => object) => unknown, isMark: (value: unknown) => boolean): MetadataKey {
  class Probe {}
  decorator(Probe);
  return markedKey(name, Probe, isMark);
}

function markedKey(name: string, target: object, isMark: (value: unknown) => boolean): MetadataKey {
  const keys = (Reflect.getOwnMetadataKeys(target) as MetadataKey[]).filter((key) => isMark(Reflect.getOwnMetadata(key, target)));
  if (keys.length !== 1) {
    throw new Error(`nestjs-pg-pool: cannot tell which metadata ${name} writes (${keys.length} candidates); this Nest version is not supported`);
  }
  return keys[0];
}
