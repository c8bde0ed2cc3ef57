import { BadRequestException, Controller, Get, Param, ParseFloatPipe } from '@nestjs/common';
import { InjectConnection, PoolConnection } from '../../lib/index.js';

const MAX_SECONDS = 10;

/**
 * A stand-in for a slow report, to see what a hang-up does: close the
 * request (Ctrl-C on `curl localhost:3000/slow/5`) before it answers, and
 * its query is cancelled on the server, the connection goes back to the
 * pool, and the log stays quiet.
 */
@Controller('slow')
export class SlowController {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Get(':seconds')
  async slow(@Param('seconds', ParseFloatPipe) seconds: number): Promise<{ slept: number }> {
    if (seconds < 0 || seconds > MAX_SECONDS) throw new BadRequestException(`seconds must be from 0 to ${MAX_SECONDS}`);
    await this.connection.query('SELECT pg_sleep($1)', [seconds]);
    return { slept: seconds };
  }
}
