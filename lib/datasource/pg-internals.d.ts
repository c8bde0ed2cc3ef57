declare module 'pg/lib/connection-parameters.js' {
  import type { ClientConfig } from 'pg';
  export default class ConnectionParameters {
    constructor(config?: ClientConfig | string);
    user: string;
    host: string;
    port: number;
    database: string;
  }
}
