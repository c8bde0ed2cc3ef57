import { Sse, UseInterceptors } from '@nestjs/common';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { handlerMetadataKeys } from '../lib/scope-initializers/handler-metadata-keys.js';

// The keys are learned from Nest's public decorators. The microservice, WebSocket and @Sse()
// suites show the interceptors take effect; this one shows each key is the decorator's own mark.

const INTERCEPTOR = { intercept: () => undefined as never };

class Controller {
  @UseInterceptors(INTERCEPTOR)
  @Sse('events')
  events(): void {}

  @MessagePattern({ cmd: 'sum' })
  sum(): void {}

  @EventPattern('created')
  created(_event: unknown): void {}

  plain(): void {}
}

@WebSocketGateway()
class Gateway {
  @SubscribeMessage('ping')
  ping(): void {}
}

describe('handlerMetadataKeys', () => {
  it('learns the key each decorator marks its target with', async () => {
    const keys = await handlerMetadataKeys();
    const { events, sum, created, plain } = Controller.prototype;
    expect(Reflect.getMetadata(keys.interceptors, events)).toEqual([INTERCEPTOR]);
    expect(Reflect.hasMetadata(keys.sse, events)).toBe(true);
    expect(Reflect.hasMetadata(keys.sse, sum)).toBe(false);
    expect(keys.patterns).toHaveLength(1);
    expect(Reflect.hasMetadata(keys.patterns[0], sum)).toBe(true);
    expect(Reflect.hasMetadata(keys.patterns[0], created)).toBe(true);
    expect(Reflect.hasMetadata(keys.patterns[0], events)).toBe(false);
    expect(Reflect.getMetadata(keys.gateway!, Gateway)).toBe(true);
    expect(Reflect.hasMetadata(keys.gateway!, Controller)).toBe(false);
    expect(Reflect.hasMetadata(keys.messageMapping!, Gateway.prototype.ping)).toBe(true);
    for (const key of [keys.interceptors, keys.sse, ...keys.patterns, keys.messageMapping!]) {
      expect(Reflect.hasMetadata(key, plain)).toBe(false);
    }
  });

  it('learns them once per process', async () => {
    expect(await handlerMetadataKeys()).toBe(await handlerMetadataKeys());
  });
});
